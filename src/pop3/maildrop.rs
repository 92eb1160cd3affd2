//! The maildrop as the TRANSACTION state sees it: message numbers, deletion marks and
//! qmail-pop3d's LAST.
//!
//! Numbers are fixed for the session (RFC 1939 §5): deleted messages keep their number
//! and are left out of listings and totals. STAT counts only undeleted messages, as the
//! RFC says (qmail-pop3d counts deleted ones too, a quirk no client needs). Nothing
//! here touches files: UPDATE hands the marks to the shell.

use super::action::MessageInfo;
use super::reply::Reply;
use super::texts;

/// UIDs are sent on the wire: keep them to one printable word.
fn clean_uidl(uidl: &str) -> String {
    if uidl.is_empty() {
        return "?".to_string();
    }
    uidl.chars()
        .map(|c| if ('!'..='~').contains(&c) { c } else { '?' })
        .collect()
}

#[derive(Debug)]
struct Message {
    uidl: String,
    size: u64,
    in_new: bool,
    deleted: bool,
}

/// The messages of one session.
#[derive(Debug)]
pub struct Maildrop {
    messages: Vec<Message>,
    /// Highest message number deleted since the start or the last RSET.
    last: usize,
}

impl Maildrop {
    pub fn new(list: Vec<MessageInfo>) -> Maildrop {
        let messages = list
            .into_iter()
            .map(|m| Message {
                uidl: clean_uidl(&m.uidl),
                size: m.size,
                in_new: m.in_new,
                deleted: false,
            })
            .collect();
        Maildrop { messages, last: 0 }
    }

    /// Count and total size of the undeleted messages.
    pub fn stat(&self) -> (usize, u64) {
        self.live().fold((0, 0), |(count, octets), (_, m)| {
            (count + 1, octets.saturating_add(m.size))
        })
    }

    /// The index of undeleted message `number`, or the reply refusing it.
    pub fn find(&self, number: u64) -> Result<usize, Reply> {
        if number == 0 {
            return Err(texts::numbered_from_one());
        }
        let index = usize::try_from(number - 1).map_err(|_| texts::no_such_message())?;
        match self.messages.get(index) {
            None => Err(texts::no_such_message()),
            Some(m) if m.deleted => Err(texts::already_deleted()),
            Some(_) => Ok(index),
        }
    }

    pub fn size(&self, index: usize) -> u64 {
        self.messages.get(index).map_or(0, |m| m.size)
    }

    pub fn uidl(&self, index: usize) -> &str {
        self.messages.get(index).map_or("?", |m| m.uidl.as_str())
    }

    /// `"number size"` lines for LIST.
    pub fn list_lines(&self) -> Vec<String> {
        self.live()
            .map(|(n, m)| format!("{n} {}", m.size))
            .collect()
    }

    /// `"number uid"` lines for UIDL.
    pub fn uidl_lines(&self) -> Vec<String> {
        self.live()
            .map(|(n, m)| format!("{n} {}", m.uidl))
            .collect()
    }

    pub fn delete(&mut self, index: usize) {
        if let Some(m) = self.messages.get_mut(index) {
            m.deleted = true;
            self.last = self.last.max(index + 1);
        }
    }

    /// RSET: undelete everything; LAST goes back to 0, as in qmail-pop3d.
    pub fn reset(&mut self) {
        self.messages.iter_mut().for_each(|m| m.deleted = false);
        self.last = 0;
    }

    pub fn last(&self) -> usize {
        self.last
    }

    /// What UPDATE does: the deleted indexes, and the undeleted ones still in new/.
    pub fn update_lists(&self) -> (Vec<usize>, Vec<usize>) {
        let deleted = self.indexes(|m| m.deleted);
        let seen = self.indexes(|m| !m.deleted && m.in_new);
        (deleted, seen)
    }

    fn indexes(&self, keep: impl Fn(&Message) -> bool) -> Vec<usize> {
        let picked = self.messages.iter().enumerate().filter(|(_, m)| keep(m));
        picked.map(|(i, _)| i).collect()
    }

    /// Undeleted messages with their 1-based numbers.
    fn live(&self) -> impl Iterator<Item = (usize, &Message)> {
        let numbered = self.messages.iter().enumerate().map(|(i, m)| (i + 1, m));
        numbered.filter(|(_, m)| !m.deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drop3() -> Maildrop {
        let info = |uidl: &str, size, in_new| MessageInfo {
            uidl: uidl.into(),
            size,
            in_new,
        };
        Maildrop::new(vec![
            info("a", 10, true),
            info("b c\u{e9}", 20, false),
            info("", 30, true),
        ])
    }

    #[test]
    fn numbering_and_errors() {
        let mut m = drop3();
        assert_eq!(m.find(1), Ok(0));
        assert_eq!(m.find(0).unwrap_err().text, "Messages are numbered from 1");
        assert_eq!(m.find(4).unwrap_err().text, "No such message");
        assert_eq!(m.find(u64::MAX).unwrap_err().text, "No such message");
        m.delete(1);
        assert_eq!(m.find(2).unwrap_err().text, "Message already deleted");
        assert_eq!(m.find(3), Ok(2));
    }

    #[test]
    fn stat_leaves_deleted_out() {
        let mut m = drop3();
        assert_eq!(m.stat(), (3, 60));
        m.delete(0);
        assert_eq!(m.stat(), (2, 50));
        assert_eq!(m.list_lines(), ["2 20", "3 30"]);
    }

    #[test]
    fn uidls_are_one_printable_word() {
        assert_eq!(drop3().uidl_lines(), ["1 a", "2 b?c?", "3 ?"]);
    }

    #[test]
    fn last_follows_dele_and_rset() {
        let mut m = drop3();
        assert_eq!(m.last(), 0);
        m.delete(2);
        m.delete(0);
        assert_eq!(m.last(), 3);
        m.reset();
        assert_eq!(m.last(), 0);
        assert_eq!(m.stat(), (3, 60));
    }

    #[test]
    fn update_lists() {
        let mut m = drop3();
        m.delete(0);
        assert_eq!(m.update_lists(), (vec![0], vec![2]));
    }
}
