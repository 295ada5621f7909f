//! Webhook deliveries already acted on, so a redelivery (same id) is not
//! acted on twice. Kept 30 days: GitHub redelivers on request, for a few
//! days after the event.

use rusqlite::params;

use crate::db::{Database, DbError};

/// How long a delivery id is remembered, in milliseconds.
const KEPT_MS: i64 = 30 * 24 * 3600 * 1000;

/// Claim `delivery` for this server to act on: `false` if it was claimed
/// before (a replay). Old claims are forgotten on the way.
pub(crate) async fn claim(db: &Database, delivery: &str, event: &str) -> Result<bool, DbError> {
    let (delivery, event) = (delivery.to_owned(), event.to_owned());
    let now = canopy_protocol::unix_ms_now();
    db.write_returning(64 + delivery.len() + event.len(), move |conn| {
        conn.execute(
            "DELETE FROM github_deliveries WHERE received_at < ?1",
            params![now - KEPT_MS],
        )?;
        let added = conn.execute(
            "INSERT OR IGNORE INTO github_deliveries (delivery_id, event, received_at) VALUES (?1, ?2, ?3)",
            params![delivery, event, now],
        )?;
        Ok(added == 1)
    })
    .await
}

/// Give a claim back: the delivery changed nothing (refused, or failed),
/// so GitHub may deliver it again.
pub(crate) async fn release(db: &Database, delivery: &str) -> Result<(), DbError> {
    let delivery = delivery.to_owned();
    db.write(64 + delivery.len(), move |conn| {
        conn.execute(
            "DELETE FROM github_deliveries WHERE delivery_id = ?1",
            params![delivery],
        )?;
        Ok(())
    })
    .await
}
