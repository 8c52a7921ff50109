//! The state database when the cargo feature `persistence` is off: no [`Store`] can exist, so
//! the broker's `Option<Arc<Store>>` is always None and every hook on it compiles to nothing.

use std::sync::Arc;
use std::task::{Context, Poll};

use crate::session::Message;
use crate::session::{Outgoing, StoreEvent, SubscriptionEntry};

/// No state database in this build.
pub enum Store {}

/// No state database in this build: nothing to open.
pub enum Opened {}

/// Never handed out in this build.
pub struct Unit<'a>(std::marker::PhantomData<&'a ()>);

/// A change's place in the write order; never handed out in this build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket(());

#[allow(missing_docs)]
impl Store {
    pub fn unit(&self) -> Unit<'_> {
        match *self {}
    }
    pub fn acks_wait(&self) -> bool {
        match *self {}
    }
    pub fn retain(&self, _: &Arc<str>, _: Option<&Arc<Message>>) -> Ticket {
        match *self {}
    }
    pub fn put_session(&self, _: &Arc<str>, _: u32, _: Option<&str>) -> Ticket {
        match *self {}
    }
    pub fn detached(&self, _: &Arc<str>, _: u32) -> Ticket {
        match *self {}
    }
    pub fn end_session(&self, _: &Arc<str>) -> Ticket {
        match *self {}
    }
    pub fn subscribe(&self, _: &Arc<str>, _: &str, _: SubscriptionEntry) -> Ticket {
        match *self {}
    }
    pub fn unsubscribe(&self, _: &Arc<str>, _: &str) -> Ticket {
        match *self {}
    }
    pub fn enqueue(&self, _: &Arc<str>, _: &Outgoing) -> Option<Ticket> {
        match *self {}
    }
    pub fn journal(&self, _: &Arc<str>, _: Vec<StoreEvent>) -> Option<Ticket> {
        match *self {}
    }
    pub fn poll_durable(&self, _: Ticket, _: &mut Context<'_>) -> Poll<()> {
        match *self {}
    }
    pub fn close(&self) {
        match *self {}
    }
    pub fn bridge_append(
        &self,
        _: &Arc<str>,
        _: &Arc<str>,
        _: crate::mqtt::QoS,
        _: bool,
        _: &Arc<Message>,
    ) -> (u64, Ticket) {
        match *self {}
    }
    pub fn bridge_remove(&self, _: impl IntoIterator<Item = u64>) {
        match *self {}
    }
    pub fn bridge_forget(&self, _: &str) {
        match *self {}
    }
}
