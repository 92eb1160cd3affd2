//! The engine's lookup time, for `bench/`: how long the login lookup (POP3, ODMR,
//! checkpassword) and the address resolution (SMTP RCPT, local delivery) take with N
//! accounts, through the library exactly as the daemon calls them.
//!
//! Builds a fresh root under DIR (which must not exist) with N accounts `uI@dK.example`
//! spread over N/100 virtual domains (at least 10): N lines in `users/poppasswd`, N exact
//! `=dK.example-uI` lines in `users/assign` (each pointing at its domain home with
//! extension `uI`), one `.qmail-uI` file per account in its domain home, and the domains
//! in `control/rcpthosts` and `control/virtualdomains`. Both tables are compiled with
//! the library (`engine::accounts::compile`, `qmail::users_cdb::compile`), then the root
//! is opened with `Engine::open` and, per run, LOOKUPS random existing logins are timed
//! one by one through `engine.snapshot().accounts.find(login, ctx)` (the lookup only, no
//! crypt) and LOOKUPS/2 random existing addresses through `engine.resolve(addr, true)`
//! (rcpthosts, virtualdomains, users/cdb, the home's checks and the `.qmail` file).
//! A warm-up pass precedes the first run.
//!
//! usage: engine_lookup DIR N [--lookups 200000] [--runs 1] [--seed 1]
//! prints one line per run:
//!   run=R n=N find_p50_us= find_p99_us= find_mean_us= resolve_p50_us= resolve_p99_us=
//!   resolve_mean_us= build_s= peak_rss_kb=

use std::fmt::Write as _;
use std::fs;
use std::hint::black_box;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use turnmail::config::Config;
use turnmail::engine::{Engine, LoginContext, Resolution};

struct Args {
    dir: PathBuf,
    n: usize,
    lookups: usize,
    runs: usize,
    seed: u64,
}

fn usage() -> ! {
    eprintln!("usage: engine_lookup DIR N [--lookups 200000] [--runs 1] [--seed 1]");
    std::process::exit(2)
}

fn parse() -> Args {
    let mut pos = Vec::new();
    let (mut lookups, mut runs, mut seed) = (200_000, 1, 1);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut num = || -> u64 {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| usage())
        };
        match a.as_str() {
            "--lookups" => lookups = num() as usize,
            "--runs" => runs = num() as usize,
            "--seed" => seed = num(),
            _ if a.starts_with("--") => usage(),
            _ => pos.push(a),
        }
    }
    if pos.len() != 2 {
        usage()
    }
    Args {
        dir: PathBuf::from(&pos[0]),
        n: pos[1].parse().unwrap_or_else(|_| usage()),
        lookups: lookups.max(100),
        runs: runs.max(1),
        seed,
    }
}

/// xorshift64*: enough randomness to spread lookups, no dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as usize % n
    }
}

fn domains_for(n: usize) -> usize {
    (n / 100).max(10)
}

fn login(i: usize, domains: usize) -> String {
    format!("u{i}@d{}.example", i % domains)
}

fn mkdir(p: &Path) {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
}

fn write(p: &Path, text: &[u8]) {
    fs::write(p, text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
}

/// The root: control files, both text sources, their cdbs, homes and `.qmail` files.
fn build(root: &Path, n: usize) {
    let domains = domains_for(n);
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    // Deliveries as root are refused; as root, use the `mail` user's usual ids.
    let (uid, gid) = if euid == 0 {
        (8, 8)
    } else {
        // SAFETY: as above.
        (euid, unsafe { libc::getegid() })
    };
    for d in ["control", "users", "domains"] {
        mkdir(&root.join(d));
    }
    let mut rcpthosts = String::new();
    let mut vds = String::new();
    for k in 0..domains {
        let _ = writeln!(rcpthosts, "d{k}.example");
        let _ = writeln!(vds, "d{k}.example:d{k}.example");
        let home = root.join("domains").join(format!("d{k}.example"));
        mkdir(&home);
        fs::set_permissions(&home, fs::Permissions::from_mode(0o755)).expect("chmod home");
    }
    write(&root.join("control/me"), b"bench.example\n");
    write(&root.join("control/rcpthosts"), rcpthosts.as_bytes());
    write(&root.join("control/virtualdomains"), vds.as_bytes());
    let mut assign = String::with_capacity(n * 80);
    let mut pw = String::with_capacity(n * 100);
    for i in 0..n {
        let k = i % domains;
        let home = root.join("domains").join(format!("d{k}.example"));
        let _ = writeln!(
            assign,
            "=d{k}.example-u{i}:mail:{uid}:{gid}:{}:-:u{i}:",
            home.display()
        );
        // The hash is never checked here: only the lookup is timed.
        let _ = writeln!(
            pw,
            "{}:$6$benchsalt$notarealhash:mail:{}/u{i}",
            login(i, domains),
            home.display()
        );
        write(&home.join(format!(".qmail-u{i}")), b"./Maildir/\n");
    }
    assign.push_str(".\n");
    write(&root.join("users/assign"), assign.as_bytes());
    write(&root.join("users/poppasswd"), pw.as_bytes());
    turnmail::qmail::users_cdb::compile(assign.as_bytes(), &root.join("users/cdb"))
        .expect("compiling users/cdb");
    turnmail::engine::accounts::compile(pw.as_bytes(), &root.join("users/poppasswd.cdb"))
        .expect("compiling users/poppasswd.cdb");
}

fn vmhwm_kb() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// (median, 99th percentile, mean) in microseconds.
fn stats(ns: &mut [u64]) -> (f64, f64, f64) {
    ns.sort_unstable();
    let at = |q: f64| ns[((ns.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
    let mean = ns.iter().sum::<u64>() as f64 / ns.len() as f64 / 1000.0;
    (at(0.5), at(0.99), mean)
}

fn time_find(engine: &Engine, logins: &[String], rng: &mut Rng, count: usize) -> Vec<u64> {
    let ctx = LoginContext::default();
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let l = logins[rng.below(logins.len())].as_bytes();
        let t = Instant::now();
        let found = engine.snapshot().accounts.find(black_box(l), ctx);
        let dt = t.elapsed();
        match found {
            Ok(Some(a)) if a.login == l => {}
            other => panic!("lookup of {}: {other:?}", String::from_utf8_lossy(l)),
        }
        out.push(dt.as_nanos() as u64);
    }
    out
}

fn time_resolve(engine: &Engine, logins: &[String], rng: &mut Rng, count: usize) -> Vec<u64> {
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let a = logins[rng.below(logins.len())].as_bytes();
        let t = Instant::now();
        let r = engine.resolve(black_box(a), true);
        let dt = t.elapsed();
        match r {
            Ok(Resolution::Local(t)) if t.dotqmail.is_some() => {}
            other => panic!("resolving {}: {other:?}", String::from_utf8_lossy(a)),
        }
        out.push(dt.as_nanos() as u64);
    }
    out
}

fn main() {
    let a = parse();
    if a.dir.exists() {
        eprintln!(
            "engine_lookup: {} exists; give a fresh path",
            a.dir.display()
        );
        std::process::exit(2);
    }
    let t = Instant::now();
    build(&a.dir, a.n);
    let (engine, report) = Engine::open(&a.dir, Config::default()).expect("opening the engine");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let build_s = t.elapsed().as_secs_f64();
    let domains = domains_for(a.n);
    let logins: Vec<String> = (0..a.n).map(|i| login(i, domains)).collect();
    let mut rng = Rng(a.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    // Warm-up: the first touches of the cdbs' pages and of the homes' inodes.
    time_find(&engine, &logins, &mut rng, a.lookups / 10);
    time_resolve(&engine, &logins, &mut rng, a.lookups / 20);
    for run in 1..=a.runs {
        let (f50, f99, fmean) = stats(&mut time_find(&engine, &logins, &mut rng, a.lookups));
        let (r50, r99, rmean) = stats(&mut time_resolve(&engine, &logins, &mut rng, a.lookups / 2));
        println!(
            "run={run} n={} find_p50_us={f50:.2} find_p99_us={f99:.2} find_mean_us={fmean:.2} \
             resolve_p50_us={r50:.2} resolve_p99_us={r99:.2} resolve_mean_us={rmean:.2} \
             build_s={build_s:.2} peak_rss_kb={}",
            a.n,
            vmhwm_kb()
        );
    }
}
