//! The load generators' measurements (`pop3_load`, `pg_lookup_load`): the machine's and
//! one process's CPU over a timed interval, from /proc, and the generator's own.

/// (busy, nice) jiffies of the whole machine; busy leaves niced work out, as
/// bench/timed_load.py does.
fn machine_jiffies() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = s
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    if v.len() < 8 {
        return (0, 0);
    }
    (v[0] + v[2] + v[5] + v[6] + v[7], v[1])
}

fn total_jiffies() -> u64 {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    s.lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|x| x.parse::<u64>().unwrap_or(0))
        .sum()
}

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

fn proc_cpu_s(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (get(11) + get(12)) / clk_tck()
}

fn vmhwm_kb(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn self_cpu_s() -> f64 {
    // SAFETY: getrusage writes into the struct we pass; RUSAGE_SELF counts all threads.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

pub struct Meter {
    busy: (u64, u64),
    total: u64,
    server: f64,
    client: f64,
    pid: Option<u32>,
}

impl Meter {
    pub fn start(pid: Option<u32>) -> Meter {
        Meter {
            busy: machine_jiffies(),
            total: total_jiffies(),
            server: pid.map_or(0.0, proc_cpu_s),
            client: self_cpu_s(),
            pid,
        }
    }

    /// key=value pairs for the interval since `start`.
    pub fn finish(&self) -> String {
        let (b1, n1) = machine_jiffies();
        let total = total_jiffies().saturating_sub(self.total).max(1) as f64;
        let busy = b1.saturating_sub(self.busy.0) as f64;
        let nice = n1.saturating_sub(self.busy.1) as f64;
        let mut s = format!(
            "machine_cpu_s={:.2} cpu_busy_pct={:.0} nice_pct={:.0} client_cpu_s={:.2}",
            busy / clk_tck(),
            100.0 * busy / total,
            100.0 * nice / total,
            self_cpu_s() - self.client
        );
        if let Some(p) = self.pid {
            s += &format!(
                " server_cpu_s={:.2} peak_rss_kb={}",
                proc_cpu_s(p) - self.server,
                vmhwm_kb(&p.to_string())
            );
        }
        s
    }
}
