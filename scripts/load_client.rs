//! A small closed-loop HTTP/1.1 load client for `scripts/load.sh`, `scripts/as_bench.sh` and
//! `scripts/soak.sh`, std only (built with plain `rustc -O`). It exists because oha sends the
//! same request on every request: load.sh's scenario (c) needs a different `Authorization`
//! header per request, and a refresh-token rotation needs the token the previous response
//! returned.
//!
//! ```text
//! load_client ADDR PATH SECONDS CONNECTIONS [TOKENS_FILE]
//! load_client refresh ADDR PATH SECONDS CONNECTIONS AUTHORIZATION SEEDS_FILE [EXTRA_FORM]
//! load_client revoke-mix ADDR TOKEN_PATH REVOKE_PATH SECONDS CONNECTIONS AUTHORIZATION ISSUE_FORM
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
//!
//! **`refresh`**: refresh-token rotation. Connection c holds its own refresh token, line c of
//! SEEDS_FILE (which needs at least CONNECTIONS lines), and sends
//! `POST PATH` with `Authorization: AUTHORIZATION` (e.g. `Basic …`) and the form body
//! `grant_type=refresh_token&refresh_token=…` (plus `&EXTRA_FORM` when given); it takes the
//! `refresh_token` of the JSON response as the token of its next request. A chain cannot go on
//! after a non-2xx answer, a response without a `refresh_token`, or a connection error (the
//! server may have rotated the token without the client seeing the new one, and presenting the
//! old one again would be reuse): that connection then stops, and the run counts it as a
//! broken chain.
//!
//! **`revoke-mix`**: issuance interleaved with revocation. Each connection sends
//! `POST TOKEN_PATH` with ISSUE_FORM (e.g. `grant_type=client_credentials`), takes the
//! `access_token` of the response, and revokes it with `POST REVOKE_PATH`
//! `token=…&token_type_hint=access_token`, then starts over; both requests carry
//! `Authorization: AUTHORIZATION`. A failed issuance is counted and followed by the next
//! issuance.
//!
//! In both modes, `LOAD_CLIENT_PAUSE_MS` in the environment (default 0) makes each connection
//! pause that long after each refresh, or after each issue-and-revoke cycle: an open loop at a
//! bounded rate instead of a closed loop at full speed (scripts/soak.sh uses it).
//!
//! Both modes print the line above plus `ok=…` (2xx answers) and `ok_rps=…` (2xx answers per
//! second); `refresh` adds `broken=…` (chains stopped early), `revoke-mix` adds `issued=…
//! revoked=… issue_p50_ms=… revoke_p50_ms=…`. `rps`, `p50_ms` and `p99_ms` cover every answered
//! request, 2xx or not.

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
    let mut body = Vec::new();
    read_response_body(reader, &mut body)
}

/// Reads one response into `body` (replacing what it held); returns its status.
fn read_response_body(
    reader: &mut BufReader<TcpStream>,
    body: &mut Vec<u8>,
) -> std::io::Result<u16> {
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
    body.clear();
    if chunked {
        let mut chunk = Vec::new();
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| bad("bad chunk size"))?;
            chunk.resize(size + 2, 0); // the chunk and its CRLF
            reader.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        body.resize(length, 0);
        reader.read_exact(body)?;
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

/// A keep-alive connection to `addr`, with Nagle off.
fn connect(addr: &str) -> std::io::Result<(TcpStream, BufReader<TcpStream>)> {
    let s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    let reader = BufReader::new(s.try_clone()?);
    Ok((s, reader))
}

/// `POST path` with a form body; the request's bytes.
fn form_post(addr: &str, path: &str, authorization: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {authorization}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// `application/x-www-form-urlencoded` encoding of a value.
fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The string value of the top-level member `name` of a JSON object, found by a plain scan
/// (the token responses here are flat objects); `None` when it is missing or not a string.
fn json_string(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let key = format!("\"{name}\"");
    let mut rest = &text[text.find(&key)? + key.len()..];
    rest = rest
        .trim_start()
        .strip_prefix(':')?
        .trim_start()
        .strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = rest.chars();
    loop {
        match chars.next()? {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                other => out.push(other), // \" \\ \/
            },
            c => out.push(c),
        }
    }
}

/// What one connection of the form-posting modes saw.
#[derive(Default)]
struct FormOutcome {
    latencies_us: Vec<u32>,
    ok: u64,
    non_2xx: u64,
    errors: u64,
    /// `refresh`: the chain stopped before the deadline.
    broken: bool,
    /// `revoke-mix`: latencies of issuance and of revocation.
    issue_us: Vec<u32>,
    revoke_us: Vec<u32>,
}

/// Sends `request` on `conn` (connecting first if needed) and reads the answer into `body`.
/// `Ok((status, micros))`, or `Err` after a connection error (the connection is then dropped).
fn exchange(
    addr: &str,
    conn: &mut Option<(TcpStream, BufReader<TcpStream>)>,
    request: &[u8],
    body: &mut Vec<u8>,
) -> Result<(u16, u32), ()> {
    if conn.is_none() {
        *conn = Some(connect(addr).map_err(|_| ())?);
    }
    let Some((writer, reader)) = conn.as_mut() else {
        return Err(());
    };
    let start = Instant::now();
    let result = writer
        .write_all(request)
        .and_then(|()| read_response_body(reader, body));
    let micros = u32::try_from(start.elapsed().as_micros()).unwrap_or(u32::MAX);
    match result {
        Ok(status) => Ok((status, micros)),
        Err(_) => {
            *conn = None;
            Err(())
        }
    }
}

/// One connection of `refresh`: a chain of rotations from `seed`.
fn refresh_chain(
    addr: &str,
    path: &str,
    authorization: &str,
    extra: &str,
    seed: String,
    pause: Duration,
    deadline: Instant,
) -> FormOutcome {
    let mut outcome = FormOutcome::default();
    let mut token = seed;
    let mut conn = None;
    let mut body = Vec::new();
    while Instant::now() < deadline {
        let mut form = format!(
            "grant_type=refresh_token&refresh_token={}",
            form_encode(&token)
        );
        if !extra.is_empty() {
            form.push('&');
            form.push_str(extra);
        }
        let request = form_post(addr, path, authorization, &form);
        match exchange(addr, &mut conn, &request, &mut body) {
            Ok((status, micros)) => {
                outcome.latencies_us.push(micros);
                if !(200..300).contains(&status) {
                    outcome.non_2xx += 1;
                    outcome.broken = true;
                    eprintln!(
                        "load_client refresh: {status}: {}",
                        String::from_utf8_lossy(&body)
                    );
                    break;
                }
                outcome.ok += 1;
                match json_string(&body, "refresh_token") {
                    Some(next) => {
                        token = next;
                        if !pause.is_zero() {
                            std::thread::sleep(pause);
                        }
                    }
                    None => {
                        outcome.broken = true;
                        eprintln!(
                            "load_client refresh: no refresh_token in {}",
                            String::from_utf8_lossy(&body)
                        );
                        break;
                    }
                }
            }
            Err(()) => {
                outcome.errors += 1;
                outcome.broken = true;
                break;
            }
        }
    }
    outcome
}

/// One connection of `revoke-mix`: issue, revoke, over and over.
fn revoke_loop(
    addr: &str,
    token_path: &str,
    revoke_path: &str,
    authorization: &str,
    issue_form: &str,
    pause: Duration,
    deadline: Instant,
) -> FormOutcome {
    let mut outcome = FormOutcome::default();
    let issue = form_post(addr, token_path, authorization, issue_form);
    let mut conn = None;
    let mut body = Vec::new();
    let mut reported = false;
    while Instant::now() < deadline {
        let token = match exchange(addr, &mut conn, &issue, &mut body) {
            Ok((status, micros)) => {
                outcome.latencies_us.push(micros);
                outcome.issue_us.push(micros);
                if !(200..300).contains(&status) {
                    outcome.non_2xx += 1;
                    if !reported {
                        reported = true;
                        eprintln!(
                            "load_client revoke-mix: issuance answered {status}: {}",
                            String::from_utf8_lossy(&body)
                        );
                    }
                    continue;
                }
                outcome.ok += 1;
                match json_string(&body, "access_token") {
                    Some(token) => token,
                    None => {
                        outcome.errors += 1;
                        continue;
                    }
                }
            }
            Err(()) => {
                outcome.errors += 1;
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let form = format!("token={}&token_type_hint=access_token", form_encode(&token));
        let revoke = form_post(addr, revoke_path, authorization, &form);
        match exchange(addr, &mut conn, &revoke, &mut body) {
            Ok((status, micros)) => {
                outcome.latencies_us.push(micros);
                outcome.revoke_us.push(micros);
                if (200..300).contains(&status) {
                    outcome.ok += 1;
                } else {
                    outcome.non_2xx += 1;
                    if !reported {
                        reported = true;
                        eprintln!(
                            "load_client revoke-mix: revocation answered {status}: {}",
                            String::from_utf8_lossy(&body)
                        );
                    }
                }
            }
            Err(()) => outcome.errors += 1,
        }
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }
    outcome
}

/// Joins the connections' threads and prints the result line of the form-posting modes.
fn report_form(mode: &str, threads: Vec<std::thread::JoinHandle<FormOutcome>>, started: Instant) {
    let mut all = FormOutcome::default();
    let mut broken = 0u64;
    for thread in threads {
        match thread.join() {
            Ok(o) => {
                all.latencies_us.extend(o.latencies_us);
                all.issue_us.extend(o.issue_us);
                all.revoke_us.extend(o.revoke_us);
                all.ok += o.ok;
                all.non_2xx += o.non_2xx;
                all.errors += o.errors;
                broken += u64::from(o.broken);
            }
            Err(_) => {
                all.errors += 1;
                broken += 1;
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    for v in [&mut all.latencies_us, &mut all.issue_us, &mut all.revoke_us] {
        v.sort_unstable();
    }
    let mut line = format!(
        "requests={} non_2xx={} errors={} seconds={elapsed:.2} rps={:.0} p50_ms={:.3} \
         p99_ms={:.3} ok={} ok_rps={:.0}",
        all.latencies_us.len(),
        all.non_2xx,
        all.errors,
        all.latencies_us.len() as f64 / elapsed,
        percentile_ms(&all.latencies_us, 50.0),
        percentile_ms(&all.latencies_us, 99.0),
        all.ok,
        all.ok as f64 / elapsed,
    );
    if mode == "refresh" {
        line.push_str(&format!(" broken={broken}"));
    } else {
        line.push_str(&format!(
            " issued={} revoked={} issue_p50_ms={:.3} revoke_p50_ms={:.3}",
            all.issue_us.len(),
            all.revoke_us.len(),
            percentile_ms(&all.issue_us, 50.0),
            percentile_ms(&all.revoke_us, 50.0),
        ));
    }
    println!("{line}");
}

/// `load_client refresh …` and `load_client revoke-mix …`.
fn form_mode(mode: &str, args: &[String]) -> ExitCode {
    let usage = || {
        eprintln!(
            "usage: load_client refresh ADDR PATH SECONDS CONNECTIONS AUTHORIZATION SEEDS_FILE \
             [EXTRA_FORM]\n       load_client revoke-mix ADDR TOKEN_PATH REVOKE_PATH SECONDS \
             CONNECTIONS AUTHORIZATION ISSUE_FORM"
        );
        ExitCode::from(2)
    };
    let numbers = |seconds: &str, connections: &str| match (
        seconds.parse::<f64>(),
        connections.parse::<usize>(),
    ) {
        (Ok(s), Ok(c)) if c > 0 => Some((s, c)),
        _ => None,
    };
    let pause = match std::env::var("LOAD_CLIENT_PAUSE_MS") {
        Err(_) => Duration::ZERO,
        Ok(ms) => match ms.trim().parse::<u64>() {
            Ok(ms) => Duration::from_millis(ms),
            Err(_) => {
                eprintln!("LOAD_CLIENT_PAUSE_MS must be a whole number of milliseconds");
                return ExitCode::from(2);
            }
        },
    };
    let started = Instant::now();
    if mode == "refresh" {
        if args.len() < 6 || args.len() > 7 {
            return usage();
        }
        let Some((seconds, connections)) = numbers(&args[2], &args[3]) else {
            return usage();
        };
        let seeds: Vec<String> = match std::fs::read_to_string(&args[5]) {
            Ok(text) => text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect(),
            Err(e) => {
                eprintln!("cannot read {}: {e}", args[5]);
                return ExitCode::from(2);
            }
        };
        if seeds.len() < connections {
            eprintln!(
                "{} refresh tokens in {}, {connections} connections need as many",
                seeds.len(),
                args[5]
            );
            return ExitCode::from(2);
        }
        let extra = args.get(6).cloned().unwrap_or_default();
        let started = Instant::now();
        let deadline = started + Duration::from_secs_f64(seconds);
        let threads = seeds
            .into_iter()
            .take(connections)
            .map(|seed| {
                let (addr, path, auth, extra) = (
                    args[0].clone(),
                    args[1].clone(),
                    args[4].clone(),
                    extra.clone(),
                );
                std::thread::spawn(move || {
                    refresh_chain(&addr, &path, &auth, &extra, seed, pause, deadline)
                })
            })
            .collect();
        report_form(mode, threads, started);
    } else {
        if args.len() != 7 {
            return usage();
        }
        let Some((seconds, connections)) = numbers(&args[3], &args[4]) else {
            return usage();
        };
        let deadline = started + Duration::from_secs_f64(seconds);
        let threads = (0..connections)
            .map(|_| {
                let a = args.to_vec();
                std::thread::spawn(move || {
                    revoke_loop(&a[0], &a[1], &a[2], &a[5], &a[6], pause, deadline)
                })
            })
            .collect();
        report_form(mode, threads, started);
    }
    ExitCode::SUCCESS
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
    if let Some(mode @ ("refresh" | "revoke-mix")) = args.first().map(String::as_str) {
        return form_mode(mode, &args[1..]);
    }
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
