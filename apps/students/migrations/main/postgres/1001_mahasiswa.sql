-- Students (mahasiswa). Versions 1000-1099 belong to the students app's main database.
CREATE TABLE IF NOT EXISTS mahasiswa (
    id         BIGSERIAL   PRIMARY KEY,
    nim        TEXT        NOT NULL UNIQUE,
    nama       TEXT        NOT NULL,
    jurusan    TEXT,
    email      TEXT,
    angkatan   INTEGER,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS mahasiswa_newest ON mahasiswa (created_at DESC, id DESC);
