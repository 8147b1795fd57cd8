//! The restaurants app's data: restaurants, orders, statuses, and the records on its topics.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A restaurant, as the seed's `restaurants.json` and `GET /search` have it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Restaurant {
    pub name: String,
    pub style: String,
    pub vegetarian: bool,
    pub delivery: bool,
}

/// An amount of money in cents (the orders' currency is implicit, as in the seed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cents(pub i64);

impl Cents {
    /// Largest amount one order may charge: 10,000.00.
    pub const MAX: Cents = Cents(1_000_000);

    /// `"25"`, `"25.5"`, `"25.50"` → 2550; more than two decimals, ≤ 0 or over the maximum is an
    /// error.
    pub fn parse(s: &str) -> Result<Self, String> {
        let d: Decimal = s
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not an amount like 25.00"))?;
        if d.scale() > 2 && d.normalize().scale() > 2 {
            return Err(format!("`{s}` has more than two decimals"));
        }
        let cents = (d * Decimal::ONE_HUNDRED).trunc();
        let cents: i64 = cents.try_into().map_err(|_| format!("`{s}` is too large"))?;
        if cents <= 0 {
            return Err("the amount must be more than 0".into());
        }
        if Cents(cents) > Self::MAX {
            return Err(format!("the amount must be at most {}", Self::MAX));
        }
        Ok(Cents(cents))
    }
}

impl std::fmt::Display for Cents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

/// Where an order is. `placed → paid → confirmed → email_sent`, or `placed → rejected`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Accepted by the API; its `order` record is on its way to the payments service.
    Placed,
    /// The bank charged the card.
    Paid,
    /// The paid order's confirmation went out to the mailer (`order_confirm`).
    Confirmed,
    /// The confirmation e-mail was handed to the SMTP server (or written as a file).
    EmailSent,
    /// The card was refused: invalid, or declined by the bank. Final; nothing charged.
    Rejected,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Placed,
        Status::Paid,
        Status::Confirmed,
        Status::EmailSent,
        Status::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Placed => "placed",
            Self::Paid => "paid",
            Self::Confirmed => "confirmed",
            Self::EmailSent => "email_sent",
            Self::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Order of the statuses: an order shows the highest it reached, whatever order the
    /// status records arrive in.
    pub fn rank(self) -> i32 {
        match self {
            Self::Placed => 0,
            Self::Paid => 1,
            Self::Confirmed => 2,
            Self::EmailSent | Self::Rejected => 3,
        }
    }

    /// No status follows this one.
    pub fn is_final(self) -> bool {
        self.rank() == 3
    }
}

/// `POST /orders`: the seed's body, plus an optional amount.
#[derive(Debug, Deserialize)]
pub struct OrderInput {
    pub email: Option<serde_json::Value>,
    #[serde(rename = "creditCard")]
    pub credit_card: Option<serde_json::Value>,
    pub restaurant: Option<serde_json::Value>,
    pub amount: Option<serde_json::Value>,
}

/// A field of [`OrderInput`] that is wrong, and why.
#[derive(Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

impl FieldError {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// An order the API accepted, before the restaurant is looked up.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub email: String,
    pub credit_card: String,
    pub restaurant: String,
    pub amount: Cents,
}

impl OrderInput {
    /// Checks every field the API can check. The card is checked by the payments service (as in
    /// the seed): an invalid one ends in `rejected`, with the reason.
    pub fn validate(self, default_amount: Cents) -> Result<NewOrder, FieldError> {
        let text = |v: Option<serde_json::Value>, field: &'static str, max: usize| match v {
            None | Some(serde_json::Value::Null) => Err(FieldError::new(field, format!("`{field}` is required"))),
            Some(serde_json::Value::String(s)) if s.trim().is_empty() => {
                Err(FieldError::new(field, format!("`{field}` is empty")))
            }
            Some(serde_json::Value::String(s)) if s.chars().count() > max => Err(FieldError::new(
                field,
                format!("`{field}` is longer than {max} characters"),
            )),
            Some(serde_json::Value::String(s)) => match kafkube_store::storable::text(&s) {
                Ok(()) => Ok(s.trim().to_owned()),
                Err(why) => Err(FieldError::new(field, format!("`{field}` {why}"))),
            },
            Some(_) => Err(FieldError::new(field, format!("`{field}` must be a string"))),
        };
        let email = text(self.email, "email", 254)?;
        if email.parse::<lettre::Address>().is_err() || email.contains(char::is_whitespace) {
            return Err(FieldError::new(
                "email",
                format!("`email` {email:?} is not an e-mail address"),
            ));
        }
        let credit_card = text(self.credit_card, "creditCard", 32)?;
        let restaurant = text(self.restaurant, "restaurant", 200)?;
        let amount = match self.amount {
            None | Some(serde_json::Value::Null) => Ok(default_amount),
            Some(serde_json::Value::Number(n)) => Cents::parse(&n.to_string()),
            Some(serde_json::Value::String(s)) => Cents::parse(&s),
            Some(_) => Err("`amount` must be a number like 25.00".into()),
        }
        .map_err(|e| FieldError::new("amount", format!("`amount`: {e}")))?;
        Ok(NewOrder {
            email,
            credit_card,
            restaurant,
            amount,
        })
    }
}

/// The last four digits of whatever the client sent as a card number (`"????"` if it has none).
pub fn card_last4(card: &str) -> String {
    let digits: Vec<char> = card.chars().filter(char::is_ascii_digit).collect();
    if digits.len() < 4 {
        return "????".into();
    }
    digits[digits.len() - 4..].iter().collect()
}

/// A record on the `order` topic: the seed's `{email, credit_card, restaurant}` and what Kafkube
/// adds. The only place a full card number travels.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub order_id: String,
    pub email: String,
    pub credit_card: String,
    pub restaurant: String,
    /// Cents.
    pub amount_cents: i64,
    pub placed_at: DateTime<Utc>,
}

/// A record on the `order_confirm` topic: a paid order, for the mailer. No card number.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Confirmation {
    pub order_id: String,
    pub email: String,
    pub restaurant: String,
    pub card_last4: String,
    pub amount_cents: i64,
    pub charge_id: String,
    pub paid_at: DateTime<Utc>,
}

/// A record on the `order_status` topic.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatusChange {
    pub order_id: String,
    pub status: Status,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A record of one order's, keyed by the order so its records stay in order, with its kind and
/// the order id as correlation id in headers.
pub fn keyed_record(topic: &str, order_id: &str, body: &impl Serialize, kind: &str) -> kafkube_bus::Outgoing {
    kafkube_bus::Outgoing::new(topic, Some(order_id), serde_json::to_vec(body).unwrap_or_default())
        .header(kafkube_bus::Header::EVENT_TYPE, kind)
        .header(kafkube_bus::Header::CORRELATION_ID, order_id)
}

/// One status an order reached, as `GET /orders/{id}` and the live stream show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HistoryEntry {
    pub status: Status,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `GET /orders/{id}`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct OrderView {
    pub order_id: String,
    pub email: String,
    pub restaurant: String,
    pub card_last4: String,
    /// `"25.00"`.
    pub amount: String,
    pub status: Status,
    pub placed_at: DateTime<Utc>,
    pub history: Vec<HistoryEntry>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(v: serde_json::Value) -> OrderInput {
        serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn amounts_are_exact_cents() {
        assert_eq!(Cents::parse("25"), Ok(Cents(2500)));
        assert_eq!(Cents::parse("0.10"), Ok(Cents(10)));
        assert_eq!(Cents::parse("19.990"), Ok(Cents(1999)));
        assert!(Cents::parse("1.001").is_err());
        assert!(Cents::parse("0").is_err());
        assert!(Cents::parse("-3").is_err());
        assert!(Cents::parse("10000.01").is_err());
        assert!(Cents::parse("abc").is_err());
        assert_eq!(Cents(2550).to_string(), "25.50");
    }

    #[test]
    fn each_bad_field_is_named() {
        let ok = json!({"email": "a@b.co", "creditCard": "4242424242424242", "restaurant": "Sabich"});
        assert!(input(ok.clone()).validate(Cents(100)).is_ok());
        for (patch, field) in [
            (json!({"email": null}), "email"),
            (json!({"email": "no-at-sign"}), "email"),
            (json!({"email": "a b@c.d"}), "email"),
            (json!({"email": 5}), "email"),
            (json!({"creditCard": ""}), "creditCard"),
            (json!({"creditCard": 4242424242424242u64}), "creditCard"),
            (json!({"restaurant": null}), "restaurant"),
            (json!({"amount": "1.234"}), "amount"),
            (json!({"amount": true}), "amount"),
        ] {
            let mut v = ok.clone();
            for (k, x) in patch.as_object().unwrap_or_else(|| unreachable!()) {
                v[k] = x.clone();
            }
            let e = input(v).validate(Cents(100)).expect_err("invalid");
            assert_eq!(e.field, field, "{}", e.message);
        }
    }

    #[test]
    fn the_last_four_digits_only() {
        assert_eq!(card_last4("4242 4242 4242 4242"), "4242");
        assert_eq!(card_last4("12"), "????");
    }

    #[test]
    fn statuses_rank_in_order() {
        assert!(Status::Placed.rank() < Status::Paid.rank());
        assert!(Status::Paid.rank() < Status::Confirmed.rank());
        assert!(Status::EmailSent.is_final() && Status::Rejected.is_final());
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
    }
}
