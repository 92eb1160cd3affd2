//! qmail's file formats, as pure parsers and writers. Nothing here touches the network;
//! disk access is limited to the cdb reader/writer.

pub mod assign;
pub mod control;
pub mod dotqmail;
pub mod quote;
pub mod users_cdb;
