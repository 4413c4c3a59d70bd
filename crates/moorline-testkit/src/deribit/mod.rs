//! A Deribit-compatible venue simulator on `127.0.0.1`, for testing trading
//! clients without the network.
//!
//! [`DeribitSim`] speaks JSON-RPC 2.0 over WebSocket on `/ws/api/v2` (other
//! paths get `404`), following Deribit's public API v2 for the subset trading
//! clients use, with the instruments `BTC-PERPETUAL` (tick 0.5, contract 10
//! USD), `ETH-PERPETUAL` (tick 0.05, contract 1 USD) and the dated future
//! `BTC-25DEC26` (tick 0.5, contract 10 USD; 271 distinct channels in all). Responses carry
//! `usIn`, `usOut`, `usDiff` and `testnet: true`; errors are Deribit error
//! objects (codes in [`codes`]).
//!
//! Methods:
//!
//! * `public/auth`: grant `client_credentials` (`client_id`, `client_secret`, `scope`;
//!   [`TEST_CLIENT_ID`]/[`TEST_CLIENT_SECRET`] or accounts added with
//!   [`DeribitSimBuilder::account`]; wrong ones: `13004`) or `refresh_token`
//!   (single use). Tokens are bound as on Deribit: scope `connection` (the default) works on
//!   the connection it was granted on only and dies with it; `session:NAME` works on any
//!   connection and survives reconnects; the answer echoes the scope and, for a session,
//!   its `sid`. Private methods need an authenticated connection or an `access_token`
//!   parameter, valid and unexpired, else `13009`. `private/logout` closes the connection.
//! * `public/set_heartbeat` `{interval}` (seconds, at least
//!   [`DeribitSimBuilder::min_heartbeat_interval`], else `-32602`): every interval the
//!   server sends `{"method":"heartbeat","params":{"type":"heartbeat"}}` if the client sent
//!   anything since the last one, else `{"type":"test_request"}`; if a `test_request` is
//!   still unanswered by `public/test` at the next interval, the server sends a close frame
//!   (code 1000) and drops the connection. `public/disable_heartbeat`. Independently, a
//!   connection the client sent no frame on for [`DeribitSimBuilder::idle_timeout`] (default
//!   10 minutes) is closed (code 1000, reason `idle timeout`).
//! * `public/test`, `public/hello` (`{"version": "1.2.26"}`), `public/get_time`, `public/status`,
//!   `public/get_instruments` `{currency}`, `public/ticker`, `public/get_order_book`.
//! * `public/subscribe`, `public/unsubscribe`, `public/unsubscribe_all` and the
//!   `private/` variants, `{channels: [...]}`; the result lists the valid
//!   channels only (unknown ones are silently left out, as on Deribit). Private
//!   channels (`user.*`) are only subscribed through `private/subscribe`;
//!   `public/subscribe` leaves them out of its result; public `raw` channels need an
//!   authenticated connection (`13778` otherwise). Channels:
//!   `ticker.{instrument}.{interval}`, `book.{instrument}.{interval}` (a
//!   `snapshot` first, then `change`s whose `prev_change_id` is the previous
//!   `change_id`; `change_id` advances by random strides), the grouped
//!   `book.{instrument}.{group}.{depth}.{interval}` (whole books), `trades.{instrument}.{interval}`,
//!   `platform_state`, `user.orders.{instrument}.{interval}`, `user.trades.{instrument}.{interval}`
//!   and `user.changes.{instrument}.{interval}`, with intervals `raw`, `100ms` and `agg2` (all
//!   deliver every event as it happens; `user.orders` data is one order on `raw`, a list otherwise).
//! * `private/buy`, `private/sell` `{instrument_name, amount, type: limit|market,
//!   price, label, time_in_force, post_only, reject_post_only, reduce_only}`:
//!   matched in price-time priority against the simulated liquidity and all
//!   accounts' resting orders; answers `{order, trades}` and notifies
//!   `user.orders`/`user.trades`/`user.changes` (maker and taker), `trades` and `book`.
//!   Amounts must be multiples of the contract size and prices of the tick size
//!   (`-32602`); orders the account's margin (10 BTC, 100 ETH of equity at 50x) does not
//!   cover get `10009`. A market order reports its protection price (the ticker's
//!   `max_price`/`min_price`) as `price`. `private/edit` `{order_id, amount, price}`,
//!   `private/cancel` `{order_id}` (`11044 not_open_order` unless open and yours),
//!   `private/cancel_all`, `private/cancel_all_by_instrument`,
//!   `private/get_open_orders_by_instrument`, `private/get_open_orders`,
//!   `private/get_open_orders_by_label`, `private/get_order_state` (`10004`),
//!   `private/get_order_state_by_label`, `private/get_user_trades_by_instrument`,
//!   `private/get_positions`, `private/get_position`, `private/get_account_summary`.
//! * `private/enable_cancel_on_disconnect` / `disable_` / `get_` `{scope: connection|account}`:
//!   the account's open orders are cancelled (`cancel_reason: cancel_on_disconnect`) when the
//!   connection ends by close, RST, half-open, a failed heartbeat, the idle timeout or `10028`,
//!   not by `private/logout`.
//!
//! Every request spends rate-limit credits ([`RateLimit`]: the non-matching pool, the
//! matching-engine pool for [`MATCHING_ENGINE`] methods, the subscribe pool for
//! subscribe/unsubscribe, as Deribit documents it); without enough, the answer is
//! `10028 too_many_requests` and the session ends (close 1008), unless
//! [`DeribitSimBuilder::end_session_on_rate_limit`] says otherwise. Requests over 32 KiB get
//! `-32600 request entity too large`. Text that is not JSON gets `-32700` (id `null`), JSON
//! that is not a request (or a binary frame) `-32600`, unknown methods `-32601`; the
//! connection stays usable. A request without an `id` is answered without one. `usDiff` is
//! the time from reading the frame to the response being ready.
//!
//! # Hooks
//!
//! A test makes the simulator break on demand, from Rust ([`DeribitSim::fault`],
//! [`DeribitSim::fault_all`], [`DeribitSim::connections_info`], [`DeribitSim::book_fault`],
//! [`DeribitSim::expire_tokens`], [`DeribitSim::revoke_tokens`],
//! [`DeribitSim::cut_before_response`], [`DeribitSim::delay_response`],
//! [`DeribitSim::fill_order`], [`DeribitSim::cancel_order`], [`DeribitSim::set_platform_locked`],
//! [`DeribitSim::fail_method`], or any [`Hook`] with [`DeribitSim::apply`]) or over HTTP with
//! [`DeribitSimBuilder::control_port`]: `GET /connections`, `POST /hook` with a [`Hook`] as
//! JSON, e.g. `{"hook": "book_fault", "instrument_name": "BTC-PERPETUAL", "fault": "withhold"}`.
//!
//! # Publication log
//!
//! With [`DeribitSimBuilder::publication_log`], the simulator records what it published (one
//! [`Publication`] per channel and notification: `change_id`, `trade_seq`s, `timestamp`, how
//! many connections it went to, whether it was a subscriber's snapshot), bounded to the last
//! `capacity` records, read with [`DeribitSim::publications`]: a test compares what a client
//! delivered with what was sent (nothing lost, nothing doubled).
//!
//! The market is deterministic: with the same [`seed`](DeribitSimBuilder::seed)
//! and the same client actions, the same sequence of market events happens
//! (use [`DeribitSimBuilder::manual_market`] and [`DeribitSim::step_market`] to
//! control when).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use futures_util::{SinkExt, StreamExt};
//! use moorline_testkit::deribit::{DeribitSim, TEST_CLIENT_ID, TEST_CLIENT_SECRET};
//! use serde_json::{Value, json};
//! use tokio_tungstenite::tungstenite::Message;
//!
//! let sim = DeribitSim::builder().seed(42).manual_market().start().await?;
//! let (mut ws, _) = tokio_tungstenite::connect_async(sim.url()).await?;
//! let auth = json!({"jsonrpc": "2.0", "id": 1, "method": "public/auth", "params": {
//!     "grant_type": "client_credentials", "client_id": TEST_CLIENT_ID, "client_secret": TEST_CLIENT_SECRET}});
//! ws.send(Message::text(auth.to_string())).await?;
//! let reply: Value = serde_json::from_str(ws.next().await.ok_or("closed")??.to_text()?)?;
//! assert_eq!(reply["result"]["token_type"], "bearer");
//!
//! // Buy 10 USD of BTC-PERPETUAL at the market: it fills against the simulated book.
//! let buy = json!({"jsonrpc": "2.0", "id": 2, "method": "private/buy", "params": {
//!     "instrument_name": "BTC-PERPETUAL", "amount": 10, "type": "market"}});
//! ws.send(Message::text(buy.to_string())).await?;
//! let reply: Value = serde_json::from_str(ws.next().await.ok_or("closed")??.to_text()?)?;
//! assert_eq!(reply["result"]["order"]["order_state"], "filled");
//! # Ok(())
//! # }
//! ```

mod account;
mod auth;
mod book;
mod channel;
mod conn;
mod control;
mod control_http;
mod dispatch;
mod error;
mod heartbeat;
mod hook_spec;
mod hooks;
mod instrument;
mod market;
mod orders;
mod payload;
mod positions;
mod publish;
mod publog;
mod ratelimit;
mod rng;
mod rpc;
mod server;
mod shared;
mod snapshot;
mod subscribe;
#[cfg(test)]
mod tests;
mod time;
mod trading;
mod venue;

/// Deribit error codes the simulator answers with.
pub mod codes {
    pub use super::error::{
        INVALID_CREDENTIALS, INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, NOT_ENOUGH_FUNDS, NOT_OPEN_ORDER,
        ORDER_NOT_FOUND, PARSE_ERROR, POST_ONLY_REJECT, RAW_SUBSCRIPTIONS_NEED_AUTH, SYSTEM_MAINTENANCE,
        TOO_MANY_REQUESTS, UNAUTHORIZED,
    };
}

pub use auth::{TEST_CLIENT_ID, TEST_CLIENT_SECRET};
pub use conn::WS_PATH;
pub use hook_spec::{Fault, Hook, HookError, RequestMatch};
pub use hooks::{BookFault, ConnectionInfo};
pub use publog::Publication;
pub use ratelimit::{MATCHING_ENGINE, RateLimit};
pub use server::{DeribitSim, DeribitSimBuilder};
pub use snapshot::{BookLevel, BookSnapshot};
pub use venue::API_VERSION;
