#!/usr/bin/env python3
# Usage: cargo build --release && python3 scripts/bench-console.py target/release/kafkube  (about 4 min)
"""Console cost and freshness on an idle `kafkube up` (release build): CPU and RSS with no page,
1 page and 3 pages open (pages = SSE clients on /console/api/events), and how long after a POST
a page sees the topic's record count change, and how long until it shows the event logger's
lag back at 0 (its committed offsets past the new record)."""
import json, os, re, subprocess, sys, threading, time, urllib.request, tempfile, statistics

BIN = sys.argv[1]
d = tempfile.mkdtemp()
p = subprocess.Popen([BIN, "up", "--students-port", "0", "--aggregator-port", "0", "--hash-port", "0",
                      "--restaurants-port", "0", "--ops-port", "0"], cwd=d, stdout=subprocess.PIPE,
                     stderr=subprocess.STDOUT, text=True, env={**os.environ, "RUST_LOG": "warn"})
banner = []
for line in p.stdout:
    banner.append(line.rstrip())
    if line.startswith("Press Ctrl-C"):
        break
threading.Thread(target=lambda: [None for _ in p.stdout], daemon=True).start()
console = next(l.split()[1] for l in banner if l.startswith("Console: ")).replace("localhost", "127.0.0.1")
base = console.rsplit("/console", 1)[0]
students = next(l.split()[1] for l in banner if l.strip().startswith("students-api")).replace("localhost", "127.0.0.1")
TICK = os.sysconf("SC_CLK_TCK")

def cpu():
    f = open(f"/proc/{p.pid}/stat").read().split(")")[1].split()
    return (int(f[11]) + int(f[12])) / TICK

def rss():
    return int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{p.pid}/status").read()).group(1)) / 1024

def window(label, secs=60):
    c0, t0 = cpu(), time.time()
    peak = 0
    while time.time() - t0 < secs:
        time.sleep(1)
        peak = max(peak, rss())
    pct = (cpu() - c0) / (time.time() - t0) * 100
    print(f"{label:<14} CPU {pct:5.2f}% of one core   RSS {rss():6.1f} MiB (peak {peak:.1f})", flush=True)
    return pct, peak

stop = threading.Event()
latest = {}
def page():
    r = urllib.request.urlopen(base + "/console/api/events", timeout=30)
    ev = None
    for raw in r:
        if stop.is_set():
            return
        line = raw.decode().rstrip("\n")
        if line.startswith("event:"):
            ev = line[6:].strip()
        elif line.startswith("data:") and ev == "status":
            s = json.loads(line[5:])
            t = next((t for t in s["topics"] if t["name"] == "mahasiswa_events"), None)
            latest["records"] = t["records"] if t else 0
            latest["committed"] = sum(g["committed"] or 0 for g in s["groups"]
                                      if g["group"] == "event-logger" and g["topic"] == "mahasiswa_events")
            latest["at"] = time.time()

time.sleep(10)
window("no page")
threads = [threading.Thread(target=page, daemon=True)]
threads[0].start()
time.sleep(3)
window("1 page")
for _ in range(2):
    t = threading.Thread(target=page, daemon=True); t.start(); threads.append(t)
time.sleep(3)
window("3 pages")

# Freshness: POST, then time until a page shows the new record count, and then the logger's
# committed offsets past it (its lag back at 0).
delays, caught_up = [], []
for i in range(20):
    before = latest.get("records", 0)
    req = urllib.request.Request(students, data=json.dumps({"nim": f"c{i}{time.time_ns()%100000}", "nama": "C"}).encode(),
                                 headers={"content-type": "application/json"})
    t0 = time.time()
    urllib.request.urlopen(req).read()
    while latest.get("records", 0) <= before:
        time.sleep(0.005)
    delays.append(time.time() - t0)
    while latest.get("committed", 0) < latest["records"]:
        time.sleep(0.005)
    caught_up.append(time.time() - t0)
    time.sleep(0.37 * (i % 3 + 1))
for label, d in (("POST -> page shows it", delays), ("POST -> page shows lag 0", caught_up)):
    d.sort()
    print(f"{label}: median {statistics.median(d)*1000:.0f} ms, max {d[-1]*1000:.0f} ms (20 POSTs)")
stop.set()
p.terminate(); p.wait(30)
