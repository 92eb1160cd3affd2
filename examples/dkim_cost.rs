//! What DKIM signing costs per message, for `bench/dkim.sh`: the library's
//! `Signer::sign` exactly as the submission path calls it (From parsing, the key
//! lookup with its stat of the `selectors` file, CRLF view, relaxed canonicalization,
//! hashing, the signature), on a 4 KiB message, for an Ed25519 and an RSA-2048 key.
//!
//! Makes a key store under DIR (which must not exist): `DIR/dkim/ed.example` (Ed25519)
//! and `DIR/dkim/rsa.example` (RSA-2048). Per run, SIGNS signatures per key are timed one
//! at a time, after an untimed warm-up pass of a tenth of that.
//!
//! usage: dkim_cost DIR [--signs 2000] [--runs 1] [--size 4096]
//! prints one line per run and key:
//!   run=R algorithm=A n=SIGNS p50_us= p99_us= mean_us= size=BYTES

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

use turnmail::dkim::Signer;
use turnmail::dkim::keys::{self, Algorithm};
use turnmail::dkim::state::{self, State};

struct Args {
    dir: PathBuf,
    signs: usize,
    runs: usize,
    size: usize,
}

fn usage() -> ! {
    eprintln!("usage: dkim_cost DIR [--signs 2000] [--runs 1] [--size 4096]");
    std::process::exit(2)
}

fn args() -> Args {
    let mut a = std::env::args().skip(1);
    let dir = PathBuf::from(a.next().unwrap_or_else(|| usage()));
    let mut out = Args {
        dir,
        signs: 2000,
        runs: 1,
        size: 4096,
    };
    while let Some(flag) = a.next() {
        let v: usize = a
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| usage());
        match flag.as_str() {
            "--signs" => out.signs = v.max(1),
            "--runs" => out.runs = v.max(1),
            "--size" => out.size = v,
            _ => usage(),
        }
    }
    out
}

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("dkim_cost: {what}: {e}");
    std::process::exit(1)
}

fn make_key(dir: &Path, domain: &str, algorithm: Algorithm) {
    let d = keys::domain_dir(dir, domain);
    std::fs::create_dir_all(&d).unwrap_or_else(|e| fail("mkdir", e));
    let pem = keys::generate(algorithm).unwrap_or_else(|e| fail("generate", e));
    std::fs::write(keys::key_path(dir, domain, "bench"), pem).unwrap_or_else(|e| fail("key", e));
    let st = State {
        active: Some("bench".into()),
        retired: Vec::new(),
    };
    std::fs::write(keys::state_path(dir, domain), state::write(&st, domain))
        .unwrap_or_else(|e| fail("selectors", e));
}

/// A message of about `size` bytes from `domain`: the usual fields, a text body of
/// 72-byte lines.
fn message(domain: &str, size: usize) -> Vec<u8> {
    let mut m = format!(
        "From: Joe Sender <joe@{domain}>\nTo: Ann <ann@example.net>\nCc: bob@example.net\n\
         Subject: the quarterly figures, as promised\nDate: Sat, 21 Nov 2026 13:30:00 +0000\n\
         Message-ID: <20261121133000.4711@{domain}>\nMIME-Version: 1.0\n\
         Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
    )
    .into_bytes();
    let line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod\n";
    while m.len() + line.len() <= size {
        m.extend_from_slice(line);
    }
    m
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let a = args();
    if a.dir.exists() {
        fail("DIR", format!("{} exists", a.dir.display()));
    }
    let cases = [
        ("ed25519", "ed.example", Algorithm::Ed25519),
        ("rsa-2048", "rsa.example", Algorithm::Rsa),
    ];
    for (_, domain, alg) in &cases {
        make_key(&a.dir, domain, *alg);
    }
    let signer = Signer::open(&a.dir);
    let msgs: Vec<Vec<u8>> = cases.iter().map(|c| message(c.1, a.size)).collect();
    for (m, c) in msgs.iter().zip(&cases) {
        for _ in 0..(a.signs / 10).max(1) {
            match signer.sign(m) {
                Ok(Some(h)) => drop(black_box(h)),
                Ok(None) => fail(c.0, "not signed"),
                Err(e) => fail(c.0, e),
            }
        }
    }
    let mut times = Vec::with_capacity(a.signs);
    for run in 1..=a.runs {
        for (m, c) in msgs.iter().zip(&cases) {
            times.clear();
            for _ in 0..a.signs {
                let t = Instant::now();
                let r = signer.sign(black_box(m));
                times.push(t.elapsed().as_secs_f64() * 1e6);
                if !matches!(r, Ok(Some(_))) {
                    fail(c.0, "signing failed");
                }
            }
            let mean = times.iter().sum::<f64>() / times.len() as f64;
            times.sort_by(f64::total_cmp);
            println!(
                "run={run} algorithm={} n={} p50_us={:.1} p99_us={:.1} mean_us={:.1} size={}",
                c.0,
                a.signs,
                percentile(&times, 0.5),
                percentile(&times, 0.99),
                mean,
                m.len()
            );
        }
    }
}
