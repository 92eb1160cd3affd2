//! What each command does to the session, in the order RFC 5321 allows them.
//!
//! [`super::session`] cuts the input and calls [`Session::handle_line`] per command line;
//! here the command is parsed, checked against the session state (HELO before MAIL,
//! MAIL before RCPT, no nested transactions, no ETRN or STARTTLS inside one, no DATA
//! after BDAT) and answered, or turned into an [`Action`] for the shell.

use super::action::Action;
use super::chunk::ChunkDecoder;
use super::command::{self, Command};
use super::dot::DotDecoder;
use super::message::MessageBuilder;
use super::session::{Chunk, ChunkOutcome, Helo, Mode, Session, Transaction, Waiting, shown};
use super::texts;

impl Session {
    pub(super) fn handle_line(&mut self, line: &[u8]) {
        let command = match command::parse(line) {
            Ok(command) => command,
            Err(reply) => return self.protocol_error(shown(line), reply),
        };
        // Only BDATs directly after a failed one are leftovers of its transaction.
        if !matches!(command, Command::Bdat { .. } | Command::BadBdat { .. }) {
            self.bdat_failed = false;
        }
        match command {
            Command::Helo { host, extended } => self.on_helo(host, extended),
            Command::Mail {
                address,
                size,
                body_8bit,
                has_params,
                auth_param,
            } => {
                if auth_param && !self.cfg.auth {
                    return self.refuse(shown(line), texts::parameter_unsupported("AUTH"));
                }
                self.on_mail(line, address, size, body_8bit, has_params)
            }
            Command::Rcpt { address } => self.on_rcpt(line, address),
            Command::Data => self.on_data(line),
            Command::Bdat { size, last } => self.on_bdat(line, size, last),
            Command::BadBdat {
                size: Some(size),
                reply,
            } => self.read_chunk(
                line,
                size,
                false,
                ChunkOutcome::Refuse {
                    reply,
                    counts: true,
                },
            ),
            Command::BadBdat { size: None, reply } => self.on_unframed_bdat(line, reply),
            Command::Rset => {
                self.tx = None;
                self.reply(&texts::ok());
            }
            Command::Noop => self.reply(&texts::ok()),
            Command::Quit => {
                self.reply(&texts::bye());
                self.close();
            }
            Command::Vrfy => self.reply(&texts::cannot_vrfy()),
            Command::Help => {
                let help = texts::help(&self.verbs());
                self.reply(&help);
            }
            Command::StartTls => self.on_starttls(line),
            Command::Etrn { argument } => self.on_etrn(line, argument),
            Command::Auth { mechanism, initial } => {
                self.on_auth(line, mechanism, initial.as_ref().map(|i| i.expose()));
            }
            Command::NotImplemented => self.protocol_error(shown(line), texts::not_implemented()),
        }
    }

    /// HELO and EHLO also end any transaction (RFC 5321 §4.1.4).
    fn on_helo(&mut self, host: String, extended: bool) {
        self.tx = None;
        self.helo = Some(Helo {
            name: host,
            extended,
        });
        let reply = if extended {
            // The greeting line carries free text: say what AUTH is for here.
            let name = if self.cfg.etrn && self.auth_keyword().is_some() {
                format!("{} {}", self.cfg.hostname, texts::AUTH_ETRN_NOTE)
            } else {
                self.cfg.hostname.clone()
            };
            texts::ehlo(&name, &self.extensions())
        } else {
            texts::helo(&self.cfg.hostname)
        };
        self.reply(&reply);
    }

    fn extensions(&self) -> Vec<String> {
        let mut keywords = vec![
            "PIPELINING".to_string(),
            format!("SIZE {}", self.cfg.max_message_size),
            "8BITMIME".to_string(),
            "ENHANCEDSTATUSCODES".to_string(),
        ];
        if self.cfg.chunking {
            keywords.push("CHUNKING".to_string());
        }
        if self.cfg.starttls && !self.tls {
            keywords.push("STARTTLS".to_string());
        }
        if self.cfg.etrn {
            keywords.push("ETRN".to_string());
        }
        if let Some(auth) = self.auth_keyword() {
            keywords.push(auth);
        }
        keywords
    }

    fn verbs(&self) -> String {
        let mut verbs = String::from("HELO EHLO MAIL RCPT DATA");
        if self.cfg.chunking {
            verbs.push_str(" BDAT");
        }
        verbs.push_str(" RSET NOOP QUIT VRFY HELP");
        if self.cfg.starttls && !self.tls {
            verbs.push_str(" STARTTLS");
        }
        if self.cfg.etrn {
            verbs.push_str(" ETRN");
        }
        if self.auth_keyword().is_some() {
            verbs.push_str(" AUTH");
        }
        verbs
    }

    fn on_mail(
        &mut self,
        line: &[u8],
        sender: Vec<u8>,
        size: u64,
        body_8bit: bool,
        has_params: bool,
    ) {
        let Some(helo) = &self.helo else {
            return self.protocol_error(shown(line), texts::need_helo());
        };
        if self.tx.is_some() {
            return self.protocol_error(shown(line), texts::nested_mail());
        }
        if has_params && !helo.extended {
            return self.protocol_error(shown(line), texts::parameters_need_ehlo());
        }
        if size > self.cfg.max_message_size {
            return self.refuse(shown(line), texts::message_too_big());
        }
        if self.cfg.auth_required && !self.authenticated && !self.relay_client {
            return self.refuse(shown(line), texts::auth_required());
        }
        if self.cfg.check_sender {
            let address = sender.clone();
            return self.request(
                Action::CheckSender { address },
                Some(Waiting::Sender { sender, body_8bit }),
            );
        }
        self.tx = Some(Transaction {
            sender,
            body_8bit,
            recipients: Vec::new(),
            bdat: None,
        });
        self.reply(&texts::sender_ok());
    }

    fn on_rcpt(&mut self, line: &[u8], address: Vec<u8>) {
        let Some(tx) = &self.tx else {
            return self.protocol_error(shown(line), texts::need_mail());
        };
        // A repeated recipient would be delivered twice; accept it once.
        if tx
            .recipients
            .iter()
            .any(|known| known.eq_ignore_ascii_case(&address))
        {
            return self.reply(&texts::recipient_ok());
        }
        if tx.recipients.len() >= self.cfg.max_recipients {
            return self.refuse(shown(line), texts::too_many_recipients());
        }
        self.request(
            Action::CheckRecipient {
                address: address.clone(),
            },
            Some(Waiting::Recipient(address)),
        );
    }

    fn on_data(&mut self, line: &[u8]) {
        let Some(tx) = &self.tx else {
            return self.protocol_error(shown(line), texts::need_mail());
        };
        if tx.bdat.is_some() {
            return self.protocol_error(shown(line), texts::data_after_bdat());
        }
        if tx.recipients.is_empty() {
            return self.protocol_error(shown(line), texts::no_valid_recipients());
        }
        self.reply(&texts::start_data());
        let builder = MessageBuilder::new(self.cfg.max_message_size, self.cfg.max_text_line);
        self.set_mode(Mode::Data(DotDecoder::default(), builder));
    }

    /// Every BDAT with a valid size has its octets read, even when refused (RFC 3030
    /// §2), or they would be taken for commands.
    fn on_bdat(&mut self, line: &[u8], size: u64, last: bool) {
        let (max_size, max_line) = (self.cfg.max_message_size, self.cfg.max_text_line);
        let outcome = match self.tx.as_mut() {
            // Not offered, but the client meant these octets as data all the same.
            _ if !self.cfg.chunking => ChunkOutcome::Refuse {
                reply: texts::not_implemented(),
                counts: true,
            },
            _ if self.bdat_failed => ChunkOutcome::Refuse {
                reply: texts::chunk_discarded(),
                counts: false,
            },
            None => ChunkOutcome::Refuse {
                reply: texts::need_mail(),
                counts: true,
            },
            Some(tx) if tx.recipients.is_empty() => ChunkOutcome::Refuse {
                reply: texts::no_valid_recipients(),
                counts: true,
            },
            Some(tx) => {
                let (_, builder) = tx.bdat.get_or_insert_with(|| {
                    (
                        ChunkDecoder::default(),
                        MessageBuilder::new(max_size, max_line),
                    )
                });
                if builder.size().saturating_add(size) > max_size {
                    builder.skip(size);
                    ChunkOutcome::Skip
                } else {
                    ChunkOutcome::Store
                }
            }
        };
        self.read_chunk(line, size, last, outcome);
    }

    /// The next `size` octets are chunk data; `outcome` says what becomes of them.
    fn read_chunk(&mut self, line: &[u8], size: u64, last: bool, outcome: ChunkOutcome) {
        self.set_mode(Mode::Chunk(Chunk {
            command: shown(line),
            size,
            remaining: size,
            last,
            outcome,
        }));
    }

    /// A BDAT line without a readable size: nothing tells where its data ends, so
    /// whatever follows could be data a client meant as message text. Reading it as
    /// commands is what would let a message be smuggled in; the session ends instead.
    fn on_unframed_bdat(&mut self, line: &[u8], reply: super::reply::Reply) {
        self.protocol_error(shown(line), reply);
        if !self.is_closed() {
            self.reply(&texts::bdat_unframed());
            self.close();
        }
    }

    /// All octets of a chunk have been read.
    pub(super) fn finish_chunk(&mut self, chunk: Chunk) {
        let line = chunk.command;
        if let ChunkOutcome::Refuse { reply, counts } = chunk.outcome {
            self.tx = None;
            self.bdat_failed = true;
            return if counts {
                self.protocol_error(line, reply)
            } else {
                self.refuse(line, reply)
            };
        }
        let Some((mut decoder, mut builder)) = self.tx.as_mut().and_then(|tx| tx.bdat.take())
        else {
            return;
        };
        if builder.is_oversize() {
            self.tx = None;
            self.bdat_failed = true;
            return self.refuse(line, texts::message_too_big());
        }
        if !chunk.last {
            if let Some(tx) = self.tx.as_mut() {
                tx.bdat = Some((decoder, builder));
            }
            return self.reply(&texts::chunk_received(chunk.size));
        }
        decoder.finish(&mut builder);
        self.finish_message(line, builder);
    }

    /// The message is complete: deliver it or say why not. Either way the
    /// transaction is over.
    pub(super) fn finish_message(&mut self, command: String, builder: MessageBuilder) {
        let Some(tx) = self.tx.take() else {
            return;
        };
        let body_8bit = tx.body_8bit || builder.is_8bit();
        match builder.finish() {
            Ok(data) => {
                let helo = self
                    .helo
                    .as_ref()
                    .map(|h| h.name.clone())
                    .unwrap_or_default();
                let deliver = Action::Deliver {
                    sender: tx.sender,
                    recipients: tx.recipients,
                    data,
                    helo,
                    tls: self.tls,
                    body_8bit,
                };
                self.request(deliver, Some(Waiting::Message));
            }
            Err(reply) => self.refuse(command, reply),
        }
    }

    fn on_starttls(&mut self, line: &[u8]) {
        if !self.cfg.starttls {
            return self.protocol_error(shown(line), texts::not_implemented());
        }
        if self.tls {
            return self.protocol_error(shown(line), texts::tls_already_active());
        }
        if self.tx.is_some() {
            return self.protocol_error(shown(line), texts::not_in_transaction("STARTTLS"));
        }
        self.reply(&texts::ready_for_tls());
        // Anything sent after STARTTLS in clear text is an injection attempt
        // (CVE-2011-0411 and friends): it must not be read as commands under TLS.
        self.discard_input();
        self.request(Action::StartTls, Some(Waiting::Tls));
    }

    /// RFC 1985: allowed any time except inside a mail transaction.
    fn on_etrn(&mut self, line: &[u8], argument: Vec<u8>) {
        if !self.cfg.etrn {
            return self.protocol_error(shown(line), texts::not_implemented());
        }
        if self.tx.is_some() {
            return self.protocol_error(shown(line), texts::not_in_transaction("ETRN"));
        }
        self.request(Action::Etrn { argument }, Some(Waiting::Etrn));
    }
}
