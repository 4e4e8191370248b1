//! What goes over a socket, as types: [`ClientFrame`] for what a client
//! sends, [`ServerFrame`] for what the bridge sends but a stream's messages
//! (which a call writes straight into their envelope, `call.rs`). The flat
//! [`Envelope`](crate::envelope::Envelope) is the form both are read from
//! and tested against.

mod client;
mod server;

pub(crate) use client::{Amount, ClientFrame, ClientSettings, MAX_ID_LEN, Request, Unreadable};
pub(crate) use server::{Refusal, Response, ServerFrame, Settings, StatusFields};
