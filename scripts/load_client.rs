//! A small closed-loop HTTP/1.1 load client for `scripts/load.sh`, std only (built with plain
//! `rustc -O`). It exists because oha sends the same headers on every request, and scenario (c)
//! needs a different `Authorization` header per request.
//!
//! ```text
//! load_client ADDR PATH SECONDS CONNECTIONS [TOKENS_FILE]
//! ```
//!
//! Opens CONNECTIONS keep-alive connections to ADDR (one thread each). Each sends `GET PATH`,
//! waits for the whole response, and sends the next, until SECONDS have passed. With
//! TOKENS_FILE (one token a line), request number k overall carries `Authorization: Bearer`
//! with token k mod the number of tokens: connection c sends tokens c, c + CONNECTIONS,
//! c + 2 × CONNECTIONS, … so the whole list is cycled through in order, evenly. Latency is
//! measured from just before a request is written to just after its response body is read.
//!
//! Prints one line: `requests=… non_2xx=… errors=… seconds=… rps=… p50_ms=… p99_ms=…`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Outcome {
    latencies_us: Vec<u32>,
    non_2xx: u64,
    errors: u64,
}

/// Reads one response; returns its status. Handles `Content-Length` and chunked bodies.
fn read_response(reader: &mut BufReader<TcpStream>) -> std::io::Result<u16> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(bad("connection closed"));
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let mut length = 0usize;
    let mut chunked = false;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(bad("connection closed in headers"));
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse().map_err(|_| bad("bad content-length"))?;
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| bad("bad chunk size"))?;
            body.resize(size + 2, 0); // the chunk and its CRLF
            reader.read_exact(&mut body)?;
            if size == 0 {
                break;
            }
        }
    } else {
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
    }
    Ok(status)
}

fn connection(
    addr: &str,
    requests: &[Vec<u8>],
    first: usize,
    step: usize,
    deadline: Instant,
) -> Outcome {
    let mut outcome = Outcome {
        latencies_us: Vec::with_capacity(1 << 16),
        non_2xx: 0,
        errors: 0,
    };
    let mut next = first % requests.len();
    let mut conn: Option<(TcpStream, BufReader<TcpStream>)> = None;
    while Instant::now() < deadline {
        if conn.is_none() {
            match TcpStream::connect(addr).and_then(|s| {
                s.set_nodelay(true)?;
                let reader = BufReader::new(s.try_clone()?);
                Ok((s, reader))
            }) {
                Ok(c) => conn = Some(c),
                Err(_) => {
                    outcome.errors += 1;
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            }
        }
        let Some((writer, reader)) = conn.as_mut() else {
            continue;
        };
        let start = Instant::now();
        let result = writer
            .write_all(&requests[next])
            .and_then(|()| read_response(reader));
        let elapsed = start.elapsed();
        match result {
            Ok(status) => {
                outcome
                    .latencies_us
                    .push(u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX));
                if !(200..300).contains(&status) {
                    outcome.non_2xx += 1;
                }
            }
            Err(_) => {
                outcome.errors += 1;
                conn = None;
            }
        }
        next = (next + step) % requests.len();
    }
    outcome
}

fn percentile_ms(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    // Nearest rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1]) / 1000.0
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 || args.len() > 5 {
        eprintln!("usage: load_client ADDR PATH SECONDS CONNECTIONS [TOKENS_FILE]");
        return ExitCode::from(2);
    }
    let (addr, path) = (args[0].clone(), &args[1]);
    let (Ok(seconds), Ok(connections)) = (args[2].parse::<f64>(), args[3].parse::<usize>()) else {
        eprintln!("SECONDS and CONNECTIONS must be numbers");
        return ExitCode::from(2);
    };
    let tokens: Vec<String> = match args.get(4) {
        None => Vec::new(),
        Some(file) => match std::fs::read_to_string(file) {
            Ok(text) => text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect(),
            Err(e) => {
                eprintln!("cannot read {file}: {e}");
                return ExitCode::from(2);
            }
        },
    };
    if args.get(4).is_some() && tokens.is_empty() {
        eprintln!("no tokens in {}", args[4]);
        return ExitCode::from(2);
    }
    // Every request, prepared up front: the client does no formatting while measuring.
    let head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n");
    let requests: Arc<Vec<Vec<u8>>> = Arc::new(if tokens.is_empty() {
        vec![format!("{head}\r\n").into_bytes()]
    } else {
        tokens
            .iter()
            .map(|t| format!("{head}Authorization: Bearer {t}\r\n\r\n").into_bytes())
            .collect()
    });

    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let threads: Vec<_> = (0..connections.max(1))
        .map(|c| {
            let (addr, requests) = (addr.clone(), Arc::clone(&requests));
            std::thread::spawn(move || connection(&addr, &requests, c, connections, deadline))
        })
        .collect();
    let mut latencies = Vec::new();
    let (mut non_2xx, mut errors) = (0, 0);
    for thread in threads {
        match thread.join() {
            Ok(outcome) => {
                latencies.extend(outcome.latencies_us);
                non_2xx += outcome.non_2xx;
                errors += outcome.errors;
            }
            Err(_) => errors += 1,
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    println!(
        "requests={} non_2xx={non_2xx} errors={errors} seconds={elapsed:.2} rps={:.0} p50_ms={:.3} \
         p99_ms={:.3}",
        latencies.len(),
        latencies.len() as f64 / elapsed,
        percentile_ms(&latencies, 50.0),
        percentile_ms(&latencies, 99.0),
    );
    ExitCode::SUCCESS
}
