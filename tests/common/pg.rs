//! A private PostgreSQL server for one test, from Debian's `postgresql` package
//! (/usr/lib/postgresql/*/bin): `initdb` into a temporary directory, listening on a
//! Unix socket in that directory only (no TCP), one database `turnmail`. Run as the
//! system user `turnmail` when the tests run as root (the server refuses root), as
//! the current user otherwise. Stopped (`pg_ctl stop -m immediate`) when dropped;
//! `stop()` and `start()` make outages.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A running private server.
pub struct Pg {
    _dir: tempfile::TempDir,
    bin: PathBuf,
    data: PathBuf,
    socket_dir: PathBuf,
    log: PathBuf,
    /// Run the server's programs as this user (when we are root).
    run_as: Option<String>,
    running: bool,
    /// Server options added by [`Pg::serve_tls`] (TCP with TLS).
    extra_opts: String,
    /// The server's port once [`Pg::serve_tls`] chose one (the Unix socket's name
    /// carries it too).
    port: Option<u16>,
}

/// The newest installed server's bin directory.
fn find_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b)
}

/// The template data directory for `bin`'s server, made on first use: in cargo's
/// temporary directory of the target (kept between runs, gone with `cargo clean`),
/// one per server version and owner, made aside and renamed into place so that
/// concurrent tests never see half of one.
fn template(bin: &Path) -> PathBuf {
    let version = bin
        .parent()
        .and_then(|p| p.file_name())
        .map(|v| v.to_string_lossy().into_owned())
        .unwrap_or_default();
    let owner = if super::is_root() { "turnmail" } else { "self" };
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let path = cache.join(format!("pg-template-3-{version}-{owner}"));
    // One maker per process; other processes are kept apart by the rename.
    static MAKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _making = MAKING.lock().unwrap_or_else(|p| p.into_inner());
    if path.join("PG_VERSION").exists() {
        return path;
    }
    let mut pg = Pg::in_new_dir(bin.to_path_buf());
    pg.make_data();
    std::fs::create_dir_all(cache).unwrap();
    let aside = cache.join(format!(
        "pg-template-tmp-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&aside);
    let o = Command::new("cp")
        .arg("-a")
        .arg(&pg.data)
        .arg(&aside)
        .output()
        .expect("cp");
    assert!(
        o.status.success(),
        "cp: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Another test may have put its template in place first: then ours goes.
    if std::fs::rename(&aside, &path).is_err() {
        let _ = std::fs::remove_dir_all(&aside);
    }
    assert!(
        path.join("PG_VERSION").exists(),
        "no template at {}",
        path.display()
    );
    path
}

impl Pg {
    /// A fresh server with an empty database `turnmail`; None (after
    /// `common::skip`, a failure under CI) when no server is installed. Its data
    /// directory is a copy of a template made once by `initdb` (seconds on a busy
    /// machine) and kept in the target directory; copying it takes a tenth of that.
    pub fn start_new() -> Option<Pg> {
        let Some(bin) = find_bin() else {
            super::skip("no PostgreSQL server (Debian package postgresql) in /usr/lib/postgresql");
            return None;
        };
        let template = template(&bin);
        let mut pg = Pg::in_new_dir(bin);
        let o = Command::new("cp")
            .arg("-a")
            .arg(&template)
            .arg(&pg.data)
            .output()
            .expect("cp");
        assert!(
            o.status.success(),
            "copying the template {}: {}",
            template.display(),
            String::from_utf8_lossy(&o.stderr)
        );
        pg.start();
        Some(pg)
    }

    /// A server not started yet, its data directory to be made, in a new temporary
    /// directory (owned by the user the server runs as).
    fn in_new_dir(bin: PathBuf) -> Pg {
        // In memory where there is a tmpfs: every test writes its copy of the template,
        // and a busy disk makes that seconds instead of a tenth.
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::Builder::new().prefix("tm-pg").tempdir_in(shm)
        } else {
            tempfile::Builder::new().prefix("tm-pg").tempdir()
        }
        .unwrap();
        let run_as = super::is_root().then(|| "turnmail".to_string());
        if let Some(user) = &run_as {
            let u = nix::unistd::User::from_name(user)
                .unwrap()
                .unwrap_or_else(|| panic!("the system user {user} is needed to run PostgreSQL as"));
            nix::unistd::chown(dir.path(), Some(u.uid), Some(u.gid)).unwrap();
        }
        let data = dir.path().join("data");
        let socket_dir = dir.path().to_path_buf();
        let log = dir.path().join("server.log");
        Pg {
            bin,
            data,
            socket_dir,
            log,
            run_as,
            running: false,
            extra_opts: String::new(),
            port: None,
            _dir: dir,
        }
    }

    /// `initdb`, then the database `turnmail` created and the server stopped cleanly.
    fn make_data(&mut self) {
        let o = self.tool(
            "initdb",
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "turnmail",
                "-E",
                "UTF8",
                "--no-sync",
                // Small: every test copies it (16 MB segments by default).
                "--wal-segsize=1",
            ],
        );
        assert!(
            o.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        self.start();
        let o = self.tool(
            "createdb",
            &[
                "-h",
                self.socket_dir.to_str().unwrap(),
                "-U",
                "turnmail",
                "turnmail",
            ],
        );
        assert!(
            o.status.success(),
            "createdb: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        // Nothing uses the database `postgres`.
        let o = self.tool(
            "dropdb",
            &[
                "-h",
                self.socket_dir.to_str().unwrap(),
                "-U",
                "turnmail",
                "--maintenance-db=turnmail",
                "postgres",
            ],
        );
        assert!(
            o.status.success(),
            "dropdb postgres: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        // Nor the templates: the tests create no databases. What is left to copy is
        // the catalog and the one database.
        self.psql("ALTER DATABASE template0 IS_TEMPLATE false");
        self.psql("ALTER DATABASE template1 IS_TEMPLATE false");
        self.psql("DROP DATABASE template0");
        self.psql("DROP DATABASE template1");
        // The WAL so far is not needed by a copy that starts from a clean stop.
        self.psql("CHECKPOINT");
        self.stop_with("fast");
    }

    fn command(&self, name: &str, args: &[&str]) -> Command {
        let prog = self.bin.join(name);
        let mut c = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&prog);
                c
            }
            None => Command::new(&prog),
        };
        c.args(args)
            .current_dir(&self.socket_dir)
            .env_remove("PGHOST")
            .env_remove("PGDATABASE")
            .env_remove("PGUSER");
        match self.port {
            Some(p) => c.env("PGPORT", p.to_string()),
            None => c.env_remove("PGPORT"),
        };
        c
    }

    fn tool(&self, name: &str, args: &[&str]) -> Output {
        self.command(name, args)
            .output()
            .unwrap_or_else(|e| panic!("running {name}: {e}"))
    }

    /// A psql session that holds the advisory lock `key` (`pg_advisory_lock`, a session
    /// lock) until the returned holder is dropped; returns once `pg_locks` shows it.
    pub fn hold_advisory_lock(&self, key: i64) -> AdvisoryHolder {
        let socket = self.socket_dir.to_str().unwrap().to_string();
        let mut child = self
            .command(
                "psql",
                &["-h", &socket, "-U", "turnmail", "-d", "turnmail", "-At"],
            )
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("psql");
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(format!("SELECT pg_advisory_lock({key});\n").as_bytes())
            .unwrap();
        stdin.flush().unwrap();
        let t = std::time::Instant::now();
        while !self.advisory_lock_held(key) {
            assert!(
                t.elapsed() < std::time::Duration::from_secs(10),
                "psql did not take the advisory lock {key}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        AdvisoryHolder {
            child,
            stdin: Some(stdin),
        }
    }

    /// Whether some session holds the advisory lock `key` (one bigint).
    pub fn advisory_lock_held(&self, key: i64) -> bool {
        let k = key as u64;
        let sql = format!(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND objsubid = 1 AND classid::bigint = {} AND objid::bigint = {}",
            k >> 32,
            k & 0xffff_ffff
        );
        self.psql(&sql).trim() != "0"
    }

    /// The connection string for `[postgres] url` (a Unix socket in the temp dir).
    pub fn url(&self) -> String {
        let port = self.port.map(|p| format!(" port={p}")).unwrap_or_default();
        format!(
            "host={} dbname=turnmail user=turnmail{port}",
            self.socket_dir.display()
        )
    }

    /// Serve TCP on 127.0.0.1 as well, TLS only (`hostssl` in pg_hba.conf: a plain TCP
    /// connection is refused), with `cert` and `key`; the Unix socket stays as it was.
    /// Restarts the server; returns the port.
    pub fn serve_tls(&mut self, cert: &Path, key: &Path) -> u16 {
        let port = super::daemon::free_port();
        for (from, name) in [(cert, "server.crt"), (key, "server.key")] {
            let to = self.data.join(name);
            std::fs::copy(from, &to).unwrap();
            std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
            if let Some(user) = &self.run_as {
                let u = nix::unistd::User::from_name(user).unwrap().unwrap();
                nix::unistd::chown(&to, Some(u.uid), Some(u.gid)).unwrap();
            }
        }
        std::fs::write(
            self.data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
        )
        .unwrap();
        self.port = Some(port);
        self.extra_opts = format!(
            " -c listen_addresses=127.0.0.1 -c port={port} -c ssl=on \
             -c ssl_cert_file=server.crt -c ssl_key_file=server.key"
        );
        if self.running {
            self.stop();
        }
        self.start();
        port
    }

    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// Start the server (again) and wait until it accepts connections.
    pub fn start(&mut self) {
        // fsync off (the OS keeps what a killed server wrote); synchronous_commit
        // stays on, so an immediate stop loses no committed change.
        let opts = format!(
            "-k {} -c listen_addresses='' -c fsync=off -c max_connections=60{}",
            self.socket_dir.display(),
            self.extra_opts
        );
        let o = self.tool(
            "pg_ctl",
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-l",
                self.log.to_str().unwrap(),
                "-o",
                &opts,
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
        assert!(
            o.status.success(),
            "pg_ctl start: {}{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
        self.running = true;
    }

    /// Stop the server at once (connections are cut, as in a crash).
    pub fn stop(&mut self) {
        self.stop_with("immediate");
    }

    /// `pg_ctl stop -m MODE`, waited for.
    fn stop_with(&mut self, mode: &str) {
        let o = self.tool(
            "pg_ctl",
            &["-D", self.data.to_str().unwrap(), "-m", mode, "-w", "stop"],
        );
        assert!(
            o.status.success(),
            "pg_ctl stop -m {mode}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        self.running = false;
    }

    /// SQL through psql as the superuser; its stdout (unaligned, tuples only).
    pub fn psql(&self, sql: &str) -> String {
        match self.psql_result(sql) {
            Ok(out) => out,
            Err(e) => panic!("psql {sql}: {e}"),
        }
    }

    /// [`Pg::psql`], its error (stderr) returned instead of failing the test.
    pub fn psql_result(&self, sql: &str) -> Result<String, String> {
        let o = self.tool(
            "psql",
            &[
                "-h",
                self.socket_dir.to_str().unwrap(),
                "-U",
                "turnmail",
                "-d",
                "turnmail",
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-c",
                sql,
            ],
        );
        if !o.status.success() {
            return Err(String::from_utf8_lossy(&o.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }
}

/// A psql session holding an advisory lock; dropped, it ends (the server releases
/// the lock).
pub struct AdvisoryHolder {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
}

impl Drop for AdvisoryHolder {
    fn drop(&mut self) {
        // End of input: psql quits and its session ends.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        if self.running {
            let _ = self.tool(
                "pg_ctl",
                &[
                    "-D",
                    self.data.to_str().unwrap_or(""),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ],
            );
        }
    }
}
