//! `*/subscribe`, `*/unsubscribe`, `*/unsubscribe_all`.

use serde_json::{Value, json};

use super::channel::{Channel, Kind};
use super::error::RpcError;
use super::payload;
use super::rpc::{self, Params};
use super::time::Now;
use super::venue::{ConnId, Delivery, Outgoing, Venue};

impl Venue {
    /// Subscribes `conn` to the valid channels named (unknown ones, and private ones via
    /// `public/subscribe`, are left out of the result, as on Deribit). A public `raw`
    /// channel on an unauthenticated connection fails the whole request with `13778`.
    /// `book` channels get their snapshot at once.
    pub(super) fn subscribe(
        &mut self,
        conn: ConnId,
        p: Params<'_>,
        private: bool,
        now: Now,
    ) -> Result<Value, RpcError> {
        let names = p.str_list("channels")?;
        let parsed: Vec<(&str, Channel)> = names
            .iter()
            .filter_map(|name| Channel::parse(name).filter(|c| private || !c.is_private()).map(|c| (*name, c)))
            .collect();
        if parsed.iter().any(|(_, c)| c.is_public_raw()) && !self.is_authenticated(conn, now) {
            return Err(RpcError::raw_needs_auth());
        }
        let Some(session) = self.sessions.get_mut(&conn) else { return Ok(json!([])) };
        let mut subscribed: Vec<&str> = Vec::new();
        let mut added = Vec::new();
        for (name, channel) in parsed {
            if session.subs.insert(channel) {
                added.push(channel);
            }
            if !subscribed.contains(&name) {
                subscribed.push(name);
            }
        }
        for channel in added {
            let market = &self.markets[channel.instrument];
            let data = match channel.kind {
                Kind::Book => payload::book_snapshot(market, now.ms()),
                Kind::GroupedBook { group, depth } => payload::grouped_book(market, group, depth, now.ms()),
                _ => continue,
            };
            let text = rpc::notification(&channel.to_string(), &data);
            self.pending.push(Delivery { conn, out: Outgoing::Text(text) });
            if let Some(log) = &mut self.log {
                log.record(channel.to_string(), 1, true, &data);
            }
        }
        Ok(json!(subscribed))
    }

    pub(super) fn unsubscribe(&mut self, conn: ConnId, p: Params<'_>) -> Result<Value, RpcError> {
        let names = p.str_list("channels")?;
        let Some(session) = self.sessions.get_mut(&conn) else { return Ok(json!([])) };
        let mut removed: Vec<&str> = Vec::new();
        for name in names {
            let Some(channel) = Channel::parse(name) else { continue };
            session.subs.remove(&channel);
            if !removed.contains(&name) {
                removed.push(name);
            }
        }
        Ok(json!(removed))
    }

    pub(super) fn unsubscribe_all(&mut self, conn: ConnId) -> Result<Value, RpcError> {
        if let Some(session) = self.sessions.get_mut(&conn) {
            session.subs.clear();
        }
        Ok(json!("ok"))
    }
}
