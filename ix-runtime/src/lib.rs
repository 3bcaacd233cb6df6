//! The per-core executor and the poll loop that drives `ix-driver` queues and the
//! `ix-net` stack. Not built yet: it arrives with the runtime issue (#4); this crate
//! exports nothing until then.
