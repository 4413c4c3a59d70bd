//! The connection: a worker task owning one socket, a cloneable command handle, and the
//! single owner's event receiver.

pub(crate) mod command;
pub(crate) mod delivery;
pub(crate) mod h1;
pub(crate) mod h2;
pub(crate) mod handle;
pub(crate) mod info;
pub(crate) mod owner;
pub(crate) mod worker;
pub(crate) mod ws_h1;
pub(crate) mod ws_h2;
