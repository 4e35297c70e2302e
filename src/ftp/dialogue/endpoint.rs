//! Choosing where a data connection goes, before the transfer command.
//!
//! Passive: EPSV first; PASV when the server does not know EPSV (500, 502,
//! 504, 522), which the session remembers for all sessions. PASV cannot name
//! an IPv6 address, so over IPv6 a refused EPSV is final. The address in a
//! PASV reply is ignored unless trusted: the control connection's peer is
//! used (NAT, and a hostile server cannot redirect the client).
//!
//! Active: EPRT first; PORT when the server does not know EPRT, for IPv4.
use std::net::SocketAddr;

use super::{finished, send, unexpected, Action, Command, Conversation, Fact, Input, Step};
use crate::ftp::address;
use crate::ftp::error::{Error, Result};
use crate::ftp::reply::Reply;

/// Replies meaning "this server does not know the extended command".
fn not_understood(code: u16) -> bool {
    matches!(code, 500 | 502 | 504 | 522)
}

/// Where a passive data connection goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassiveAddress {
    /// This port on the server the control connection reached (its peer,
    /// or through a proxy the server's host as given).
    ControlPeer(u16),
    /// The address of a trusted PASV reply.
    Advertised(SocketAddr),
}

pub struct Passive {
    /// Whether the control connection reached the server over IPv6, where
    /// PASV cannot name an address.
    over_ipv6: bool,
    trust_pasv_address: bool,
    state: PassiveState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PassiveState {
    Epsv,
    /// EPSV was refused; the fact is being recorded before PASV.
    LearningEpsvRefused,
    Pasv,
}

impl Passive {
    /// `try_epsv`: EPSV is enabled and this server has not refused it yet.
    pub fn new(over_ipv6: bool, try_epsv: bool, trust_pasv_address: bool) -> Passive {
        Passive {
            over_ipv6,
            trust_pasv_address,
            state: if try_epsv {
                PassiveState::Epsv
            } else {
                PassiveState::Pasv
            },
        }
    }

    fn command(&self) -> Command {
        match self.state {
            PassiveState::Epsv => Command::new("EPSV"),
            PassiveState::LearningEpsvRefused | PassiveState::Pasv => Command::new("PASV"),
        }
    }

    fn pasv_address(&self, reply: &Reply) -> Result<PassiveAddress> {
        let advertised = address::parse_pasv(reply.first_line())
            .ok_or_else(|| Error::protocol("PASV", format!("no address in {:?}", reply.text())))?;
        if self.trust_pasv_address {
            return Ok(PassiveAddress::Advertised(advertised));
        }
        log::debug!(
            "PASV reply names {}; using the server the control connection reached",
            advertised.ip(),
        );
        Ok(PassiveAddress::ControlPeer(advertised.port()))
    }
}

impl Conversation for Passive {
    /// Where to open the data connection.
    type Outcome = PassiveAddress;

    fn start(&mut self) -> Result<Step<PassiveAddress>> {
        send(self.command())
    }

    fn next(&mut self, input: Input) -> Result<Step<PassiveAddress>> {
        match (self.state, input) {
            (PassiveState::Epsv, Input::Reply(reply)) => {
                if reply.code == 229 {
                    let port = address::parse_epsv(reply.first_line()).ok_or_else(|| {
                        Error::protocol("EPSV", format!("no port in {:?}", reply.text()))
                    })?;
                    return finished(PassiveAddress::ControlPeer(port));
                }
                if !not_understood(reply.code) || self.over_ipv6 {
                    return Err(super::refused("EPSV", &reply));
                }
                log::info!("server refused EPSV ({}); using PASV", reply.code);
                self.state = PassiveState::LearningEpsvRefused;
                Ok(Step::Do(Action::Learn(Fact::EpsvRefused)))
            }
            (PassiveState::LearningEpsvRefused, Input::Done) => {
                self.state = PassiveState::Pasv;
                send(self.command())
            }
            (PassiveState::Pasv, Input::Reply(reply)) => {
                if reply.code != 227 {
                    return Err(super::refused("PASV", &reply));
                }
                finished(self.pasv_address(&reply)?)
            }
            (_, input) => unexpected("passive mode", &input),
        }
    }
}

pub struct Active {
    /// The address the server is told to connect to.
    listening: SocketAddr,
    /// The same address for PORT; `None` for IPv6, which PORT cannot name.
    port_argument: Option<String>,
    state: ActiveState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ActiveState {
    Eprt,
    Port,
}

impl Active {
    pub fn new(listening: SocketAddr) -> Active {
        Active {
            listening,
            port_argument: address::port_argument(listening),
            state: ActiveState::Eprt,
        }
    }
}

impl Conversation for Active {
    type Outcome = ();

    fn start(&mut self) -> Result<Step<()>> {
        send(Command::with(
            "EPRT",
            address::eprt_argument(self.listening).into_bytes(),
        ))
    }

    fn next(&mut self, input: Input) -> Result<Step<()>> {
        let Input::Reply(reply) = input else {
            return unexpected("active mode", &input);
        };
        match self.state {
            ActiveState::Eprt if reply.code == 200 => finished(()),
            ActiveState::Eprt => match &self.port_argument {
                Some(argument) if not_understood(reply.code) => {
                    self.state = ActiveState::Port;
                    send(Command::with("PORT", argument.as_bytes()))
                }
                _ => Err(super::refused("EPRT", &reply)),
            },
            ActiveState::Port if reply.code == 200 => finished(()),
            ActiveState::Port => {
                let argument = self.port_argument.as_deref().unwrap_or_default();
                Err(super::refused(format!("PORT {argument}"), &reply))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::script::{run, Expected, Lines};
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    const EPSV: bool = true;
    const NO_EPSV: bool = false;
    const TRUSTED: bool = true;
    const UNTRUSTED: bool = false;

    #[test]
    fn passive() {
        let (v4, v6) = (false, true);
        #[rustfmt::skip]
        let table: Vec<(Passive, Lines, Lines, Expected<&str>)> = vec![
            (Passive::new(v4, EPSV, UNTRUSTED), &["229 Entering Extended Passive Mode (|||6446|)"], &["EPSV"], Ok("peer:6446")),
            (Passive::new(v6, EPSV, UNTRUSTED), &["229 ok (|||6446|)"], &["EPSV"], Ok("peer:6446")),
            (Passive::new(v4, EPSV, UNTRUSTED), &["500 EPSV not understood", "227 Entering Passive Mode (192,0,2,1,4,1)."],
                &["EPSV", "learn EpsvRefused", "PASV"], Ok("peer:1025")),
            (Passive::new(v4, EPSV, UNTRUSTED), &["502 no", "227 (192,0,2,1,4,1)"], &["EPSV", "learn EpsvRefused", "PASV"], Ok("peer:1025")),
            (Passive::new(v4, EPSV, UNTRUSTED), &["504 no", "227 (192,0,2,1,4,1)"], &["EPSV", "learn EpsvRefused", "PASV"], Ok("peer:1025")),
            (Passive::new(v4, EPSV, UNTRUSTED), &["522 no", "227 (192,0,2,1,4,1)"], &["EPSV", "learn EpsvRefused", "PASV"], Ok("peer:1025")),
            // Remembered: straight to PASV.
            (Passive::new(v4, NO_EPSV, UNTRUSTED), &["227 (192,0,2,1,4,1)"], &["PASV"], Ok("peer:1025")),
            // The PASV address is ignored unless trusted (NAT, hostile servers).
            (Passive::new(v4, NO_EPSV, UNTRUSTED), &["227 (10,0,0,7,4,1)"], &["PASV"], Ok("peer:1025")),
            (Passive::new(v4, NO_EPSV, TRUSTED), &["227 (10,0,0,7,4,1)"], &["PASV"], Ok("10.0.0.7:1025")),
            (Passive::new(v6, EPSV, UNTRUSTED), &["500 no"], &["EPSV"], Err("server refused EPSV: no (500) — the server does not allow passive mode; try active mode (--active)")),
            (Passive::new(v4, EPSV, UNTRUSTED), &["550 Permission denied."], &["EPSV"],
                Err("server refused EPSV: Permission denied. (550) — the server does not allow passive mode; try active mode (--active)")),
            (Passive::new(v4, EPSV, UNTRUSTED), &["425 later"], &["EPSV"],
                Err("server refused EPSV: later (425) — the data connection could not be opened: a firewall or NAT between client and server may block passive ports; try --active")),
            (Passive::new(v4, EPSV, UNTRUSTED), &["229 ok (|||0|)"], &["EPSV"], Err("protocol error: EPSV: no port in \"ok (|||0|)\"")),
            (Passive::new(v4, EPSV, UNTRUSTED), &["502 no", "502 no"], &["EPSV", "learn EpsvRefused", "PASV"],
                Err("server refused PASV: no (502) — the server does not allow passive mode; try active mode (--active)")),
            (Passive::new(v4, NO_EPSV, UNTRUSTED), &["227 ok (127,0,0,1,0,0)"], &["PASV"], Err("protocol error: PASV: no address in \"ok (127,0,0,1,0,0)\"")),
        ];
        for (passive, replies, sent, outcome) in table {
            let (actual_sent, actual) = run(passive, replies);
            assert_eq!(actual_sent, sent, "{replies:?}");
            let expected = outcome.map(|text| match text.strip_prefix("peer:") {
                Some(port) => PassiveAddress::ControlPeer(port.parse().unwrap()),
                None => PassiveAddress::Advertised(addr(text)),
            });
            let expected = expected.map_err(String::from);
            assert_eq!(actual, expected, "{replies:?}");
        }
    }

    #[test]
    fn active() {
        let v4 = addr("192.0.2.9:40001");
        let v6 = addr("[2001:db8::9]:40001");
        #[rustfmt::skip]
        let table: &[(SocketAddr, Lines, Lines, Expected<()>)] = &[
            (v4, &["200 EPRT ok"], &["EPRT |1|192.0.2.9|40001|"], Ok(())),
            (v6, &["200 EPRT ok"], &["EPRT |2|2001:db8::9|40001|"], Ok(())),
            (v4, &["500 no", "200 PORT ok"], &["EPRT |1|192.0.2.9|40001|", "PORT 192,0,2,9,156,65"], Ok(())),
            (v4, &["522 no", "200 PORT ok"], &["EPRT |1|192.0.2.9|40001|", "PORT 192,0,2,9,156,65"], Ok(())),
            (v6, &["500 no"], &["EPRT |2|2001:db8::9|40001|"], Err("server refused EPRT: no (500)")),
            (v4, &["501 bad address"], &["EPRT |1|192.0.2.9|40001|"], Err("server refused EPRT: bad address (501)")),
            (v4, &["502 no", "500 no PORT"], &["EPRT |1|192.0.2.9|40001|", "PORT 192,0,2,9,156,65"],
                Err("server refused PORT 192,0,2,9,156,65: no PORT (500)")),
        ];
        for (listening, replies, sent, outcome) in table {
            let (actual_sent, actual) = run(Active::new(*listening), replies);
            assert_eq!(&actual_sent, sent, "{replies:?}");
            assert_eq!(actual, outcome.map_err(String::from), "{replies:?}");
        }
    }
}
