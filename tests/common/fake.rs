//! A scripted FTP server on a real loopback socket, for behaviour no real
//! server shows on demand: silence, garbage, refusing TLS, stalling a transfer.
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

pub struct FakeServer {
    pub port: u16,
    /// Every command line the client sent, in order.
    pub received: Arc<Mutex<Vec<String>>>,
}

pub struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    received: Arc<Mutex<Vec<String>>>,
}

impl Conn {
    pub fn send(&mut self, text: &str) {
        let _ = self.writer.write_all(text.as_bytes());
    }

    /// The next command line, or `None` when the client hung up.
    pub fn recv(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => {
                let line = line.trim_end().to_string();
                self.received.lock().unwrap().push(line.clone());
                Some(line)
            }
        }
    }

    /// Answers the plain-FTP login and set-up commands until `until` arrives.
    pub fn plain_login_until(&mut self, until: &str) -> Option<String> {
        while let Some(line) = self.recv() {
            let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
            match verb.as_str() {
                "USER" => self.send("331 password please\r\n"),
                "PASS" => self.send("230 logged in\r\n"),
                "TYPE" => self.send("200 ok\r\n"),
                "FEAT" => self.send("211-Features:\r\n EPSV\r\n211 End\r\n"),
                v if v == until => return Some(line),
                _ => self.send("502 not here\r\n"),
            }
        }
        None
    }
}

impl FakeServer {
    /// Serves each connection with `script` on its own thread. The threads
    /// end when the client disconnects; the listener thread ends with the
    /// test process.
    pub fn start(script: fn(&mut Conn)) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&received);
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let log = Arc::clone(&log);
                thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                    let writer = stream.try_clone().unwrap();
                    let mut conn = Conn {
                        reader: BufReader::new(stream),
                        writer,
                        received: log,
                    };
                    script(&mut conn);
                });
            }
        });
        FakeServer { port, received }
    }

    pub fn received(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }
}
