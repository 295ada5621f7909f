//! Sync tickets: how a browser, which cannot set headers on a WebSocket,
//! proves who it is on `GET /sync?ticket=…`.
//!
//! A ticket is `base64url(payload ‖ HMAC-SHA256(key, payload))`. The payload
//! names the peer id the server chose for this connection, the user behind
//! it, when it was issued and when it expires (60 s later), and a random
//! nonce. A ticket is good once: its nonce is remembered until it expires,
//! and tickets issued before this process started are refused, so a restart
//! cannot reopen a used one.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use super::{AuthError, secret::ServerKey};

/// How long a ticket is good for.
pub const TICKET_TTL: Duration = Duration::from_secs(60);

const VERSION: u8 = 1;
const MAC_LEN: usize = 32;
const NONCE_LEN: usize = 16;
/// Longest encoded ticket accepted; anything longer is refused unparsed.
pub const MAX_TICKET_CHARS: usize = 1024;

/// What a valid ticket grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketClaims {
    /// The only peer id the connection may join as.
    pub peer_id: String,
    /// The user (or agent principal) behind it.
    pub principal: String,
    /// Issue time, unix milliseconds.
    pub issued_at: u64,
    /// Expiry, unix milliseconds.
    pub expires_at: u64,
    nonce: [u8; NONCE_LEN],
}

/// Issues and redeems tickets. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Tickets {
    key: ServerKey,
    started_at: u64,
    used: Arc<Mutex<HashMap<[u8; NONCE_LEN], u64>>>,
}

impl Tickets {
    /// Tickets signed with `key`; `now_ms` is this process's start.
    pub fn new(key: ServerKey, now_ms: u64) -> Self {
        Tickets {
            key,
            started_at: now_ms,
            used: Arc::default(),
        }
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length; 32 bytes cannot fail.
        <Hmac<Sha256> as Mac>::new_from_slice(self.key.bytes())
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
    }

    /// A ticket for `peer_id`, acting as `principal`, issued at `now_ms`.
    pub fn issue(&self, peer_id: &str, principal: &str, now_ms: u64) -> Result<String, AuthError> {
        let peer = u8::try_from(peer_id.len()).map_err(|_| AuthError::BadTicket)?;
        let who = u8::try_from(principal.len()).map_err(|_| AuthError::BadTicket)?;
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let expires_at = now_ms + TICKET_TTL.as_millis() as u64;
        let mut payload = Vec::with_capacity(64 + peer_id.len() + principal.len());
        payload.push(VERSION);
        payload.extend_from_slice(&now_ms.to_be_bytes());
        payload.extend_from_slice(&expires_at.to_be_bytes());
        payload.extend_from_slice(&nonce);
        payload.push(peer);
        payload.extend_from_slice(peer_id.as_bytes());
        payload.push(who);
        payload.extend_from_slice(principal.as_bytes());
        let mut mac = self.mac();
        mac.update(&payload);
        payload.extend_from_slice(&mac.finalize().into_bytes());
        Ok(URL_SAFE_NO_PAD.encode(payload))
    }

    /// Check a ticket and use it up. Every failure is the same error to the
    /// caller; the reason is logged.
    pub fn redeem(&self, ticket: &str, now_ms: u64) -> Result<TicketClaims, AuthError> {
        let claims = self.verify(ticket, now_ms).inspect_err(|e| {
            tracing::debug!(reason = %e, "sync ticket refused");
        })?;
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        used.retain(|_, exp| *exp > now_ms);
        if used.insert(claims.nonce, claims.expires_at).is_some() {
            tracing::debug!("sync ticket reused");
            return Err(AuthError::BadTicket);
        }
        Ok(claims)
    }

    fn verify(&self, ticket: &str, now_ms: u64) -> Result<TicketClaims, AuthError> {
        if ticket.len() > MAX_TICKET_CHARS {
            return Err(AuthError::BadTicket);
        }
        let raw = URL_SAFE_NO_PAD
            .decode(ticket)
            .map_err(|_| AuthError::BadTicket)?;
        if raw.len() < MAC_LEN + 1 {
            return Err(AuthError::BadTicket);
        }
        let (payload, tag) = raw.split_at(raw.len() - MAC_LEN);
        let mut mac = self.mac();
        mac.update(payload);
        // `verify_slice` compares in constant time.
        mac.verify_slice(tag).map_err(|_| AuthError::BadTicket)?;
        let claims = parse_payload(payload).ok_or(AuthError::BadTicket)?;
        if claims.expires_at <= now_ms {
            return Err(AuthError::TicketExpired);
        }
        if claims.issued_at < self.started_at {
            // Issued by an earlier run, whose memory of used nonces is gone.
            return Err(AuthError::TicketExpired);
        }
        Ok(claims)
    }
}

fn parse_payload(p: &[u8]) -> Option<TicketClaims> {
    let (&version, p) = p.split_first()?;
    if version != VERSION {
        return None;
    }
    let (issued, p) = p.split_at_checked(8)?;
    let (expires, p) = p.split_at_checked(8)?;
    let (nonce, p) = p.split_at_checked(NONCE_LEN)?;
    let (&peer_len, p) = p.split_first()?;
    let (peer, p) = p.split_at_checked(usize::from(peer_len))?;
    let (&who_len, p) = p.split_first()?;
    let (who, p) = p.split_at_checked(usize::from(who_len))?;
    if !p.is_empty() {
        return None;
    }
    Some(TicketClaims {
        peer_id: String::from_utf8(peer.to_vec()).ok()?,
        principal: String::from_utf8(who.to_vec()).ok()?,
        issued_at: u64::from_be_bytes(issued.try_into().ok()?),
        expires_at: u64::from_be_bytes(expires.try_into().ok()?),
        nonce: nonce.try_into().ok()?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn tickets(started: u64) -> Tickets {
        Tickets::new(ServerKey::parse(&"11".repeat(32)).unwrap(), started)
    }

    #[test]
    fn a_ticket_is_good_once() {
        let t = tickets(1000);
        let ticket = t.issue("u:usr_a:x", "usr_a", 2000).unwrap();
        let claims = t.redeem(&ticket, 2500).unwrap();
        assert_eq!(claims.peer_id, "u:usr_a:x");
        assert_eq!(claims.principal, "usr_a");
        assert!(matches!(t.redeem(&ticket, 2600), Err(AuthError::BadTicket)));
    }

    #[test]
    fn expired_tampered_foreign_and_stale_tickets_are_refused() {
        let t = tickets(1000);
        let ticket = t.issue("u:usr_a:x", "usr_a", 2000).unwrap();
        let expiry = 2000 + TICKET_TTL.as_millis() as u64;
        assert!(matches!(
            t.redeem(&ticket, expiry),
            Err(AuthError::TicketExpired)
        ));

        // Every single-byte change of the decoded ticket is caught.
        let raw = URL_SAFE_NO_PAD.decode(&ticket).unwrap();
        for i in 0..raw.len() {
            let mut bad = raw.clone();
            bad[i] ^= 0x01;
            let bad = URL_SAFE_NO_PAD.encode(bad);
            assert!(
                t.redeem(&bad, 2100).is_err(),
                "byte {i} flipped was accepted"
            );
        }
        // Another server's key.
        let other = Tickets::new(ServerKey::parse(&"22".repeat(32)).unwrap(), 1000);
        let foreign = other.issue("u:usr_a:x", "usr_a", 2000).unwrap();
        assert!(t.redeem(&foreign, 2100).is_err());
        // Issued before this process started.
        let restarted = tickets(3000);
        assert!(restarted.redeem(&ticket, 3100).is_err());
        // Garbage.
        for junk in ["", "!!!", &"A".repeat(MAX_TICKET_CHARS + 1)] {
            assert!(t.redeem(junk, 2100).is_err());
        }
    }
}
