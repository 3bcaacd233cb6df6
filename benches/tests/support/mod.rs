//! Test servers of known behaviour for the load generator's tests: blocking,
//! one thread per connection, on loopback, stopped when dropped; and
//! (`workspace`) the release binaries the end-to-end tests run.
// Each test binary that includes this module uses a part of it.
#![allow(dead_code)]

pub mod workspace;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How the server answers.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// HTTP: each request waits this long (a thread sleep), then `200 OK`.
    HttpServiceTime(Duration),
    /// HTTP: like `HttpServiceTime`, but one request at a time across all
    /// connections (a single-core server).
    HttpSerialized(Duration),
    /// memcached text protocol with a real store, each request waiting this long.
    Memcache(Duration),
    /// Answers every HTTP request with these bytes.
    Fixed(&'static [u8]),
    /// Reads requests and never answers.
    Silent,
}

pub const HELLO: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, world!";

/// A running test server; dropping it stops accepting.
pub struct TestServer {
    pub addr: SocketAddrV4,
    /// Connections accepted so far.
    pub accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl TestServer {
    pub fn start(behaviour: Behaviour) -> Self {
        Self::start_on(Ipv4Addr::LOCALHOST, behaviour)
    }

    pub fn start_on(ip: Ipv4Addr, behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind(SocketAddrV4::new(ip, 0)).expect("bind");
        let addr = match listener.local_addr().expect("local addr") {
            std::net::SocketAddr::V4(a) => a,
            other => panic!("not IPv4: {other}"),
        };
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let serial = Arc::new(Mutex::new(()));
        let store = Arc::new(Mutex::new(HashMap::new()));
        let accepted = Arc::new(AtomicUsize::new(0));
        let counted = accepted.clone();
        let acceptor = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        counted.fetch_add(1, Ordering::Relaxed);
                        let (behaviour, serial, store) = (behaviour.clone(), serial.clone(), store.clone());
                        std::thread::spawn(move || serve(stream, &behaviour, &serial, &store));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        TestServer { addr, accepted, stop, acceptor: Some(acceptor) }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

type Store = Mutex<HashMap<Vec<u8>, Vec<u8>>>;

fn serve(stream: TcpStream, behaviour: &Behaviour, serial: &Mutex<()>, store: &Store) {
    stream.set_nodelay(true).expect("nodelay");
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    loop {
        let reply = match behaviour {
            Behaviour::Memcache(service) => match memcache_request(&mut reader, store) {
                Some(reply) => {
                    std::thread::sleep(*service);
                    reply
                }
                None => return,
            },
            _ if !read_http_request(&mut reader) => return,
            Behaviour::HttpServiceTime(service) => {
                std::thread::sleep(*service);
                HELLO.to_vec()
            }
            Behaviour::HttpSerialized(service) => {
                let _one_at_a_time = serial.lock().expect("not poisoned");
                std::thread::sleep(*service);
                HELLO.to_vec()
            }
            Behaviour::Fixed(bytes) => bytes.to_vec(),
            Behaviour::Silent => continue,
        };
        if writer.write_all(&reply).is_err() {
            return;
        }
    }
}

/// Reads one request head; `false` at end of stream.
fn read_http_request(reader: &mut BufReader<TcpStream>) -> bool {
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return false,
            Ok(_) if line == "\r\n" => return true,
            Ok(_) => {}
        }
    }
}

/// Reads one memcached request and computes its reply; `None` at end of stream.
fn memcache_request(reader: &mut BufReader<TcpStream>, store: &Store) -> Option<Vec<u8>> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let fields: Vec<&str> = line.trim_end().split(' ').collect();
    match fields.as_slice() {
        ["get", key] => {
            let store = store.lock().expect("not poisoned");
            Some(match store.get(key.as_bytes()) {
                Some(v) => {
                    let mut r = format!("VALUE {key} 0 {}\r\n", v.len()).into_bytes();
                    r.extend_from_slice(v);
                    r.extend_from_slice(b"\r\nEND\r\n");
                    r
                }
                None => b"END\r\n".to_vec(),
            })
        }
        ["set", key, _flags, _exptime, len] => {
            let mut data = vec![0; len.parse::<usize>().ok()? + 2];
            reader.read_exact(&mut data).ok()?;
            data.truncate(data.len() - 2);
            store.lock().expect("not poisoned").insert(key.as_bytes().to_vec(), data);
            Some(b"STORED\r\n".to_vec())
        }
        _ => Some(b"ERROR\r\n".to_vec()),
    }
}
