//! CPU time per process, from `/proc/<pid>/stat` (user + system, all threads): the bench shares
//! two cores between the broker, the binaries and itself, so it reports where each message's
//! CPU went, not only how many messages got through.

use serde::Serialize;

/// Linux reports utime/stime in USER_HZ ticks, 100 per second on every architecture we run on.
const TICKS_PER_SECOND: f64 = 100.0;

/// Seconds of CPU `pid` has used so far (`None` if it is gone or unreadable).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(0) ppid(1) … utime(11) stime(12).
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SECOND)
}

/// Every process whose command name is `comm` (e.g. all `postgres` backends).
pub fn find_processes(comm: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let name = std::fs::read_to_string(e.path().join("comm")).ok()?;
            (name.trim() == comm).then_some(pid)
        })
        .collect()
}

/// The pid of a process whose command name is `comm` (e.g. `beam.smp`, of which there is one).
pub fn find_process(comm: &str) -> Option<u32> {
    find_processes(comm).into_iter().next()
}

/// Processes to account, by role (a role may span several processes).
#[derive(Debug, Clone, Default)]
pub struct Watched {
    pub roles: Vec<(String, u32)>,
}

impl Watched {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, role: &str, pid: Option<u32>) -> Self {
        if let Some(pid) = pid {
            self.roles.push((role.to_owned(), pid));
        }
        self
    }

    /// Several processes under one role (summed).
    pub fn with_all(mut self, role: &str, pids: &[u32]) -> Self {
        for pid in pids {
            self.roles.push((role.to_owned(), *pid));
        }
        self
    }

    pub fn start(&self) -> Sample {
        Sample {
            at: std::time::Instant::now(),
            cpu: self
                .roles
                .iter()
                .map(|(r, pid)| (r.clone(), *pid, cpu_seconds(*pid)))
                .collect(),
        }
    }
}

/// CPU readings at one instant.
pub struct Sample {
    at: std::time::Instant,
    cpu: Vec<(String, u32, Option<f64>)>,
}

/// Where the CPU went over a measured stretch.
#[derive(Debug, Clone, Serialize, Default)]
pub struct CpuUse {
    /// role → cores used on average over the stretch.
    pub cores: Vec<(String, f64)>,
    /// role → microseconds of CPU per message.
    pub us_per_msg: Vec<(String, f64)>,
}

impl Sample {
    /// CPU used since this sample, spread over `messages`.
    pub fn finish(&self, messages: usize) -> CpuUse {
        let wall = self.at.elapsed().as_secs_f64();
        // Per role, in first-seen order: processes that ended in between are left out.
        let mut used: Vec<(String, f64)> = Vec::new();
        for (role, pid, before) in &self.cpu {
            let (Some(before), Some(after)) = (before, cpu_seconds(*pid)) else {
                continue;
            };
            match used.iter_mut().find(|(r, _)| r == role) {
                Some((_, total)) => *total += after - before,
                None => used.push((role.clone(), after - before)),
            }
        }
        let mut out = CpuUse::default();
        for (role, seconds) in used {
            out.cores.push((role.clone(), seconds / wall.max(1e-9)));
            out.us_per_msg
                .push((role, seconds * 1e6 / (messages.max(1) as f64)));
        }
        out
    }
}

impl CpuUse {
    /// `broker 28 µs, ingest 50 µs, …` for the report.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .us_per_msg
            .iter()
            .zip(&self.cores)
            .map(|((role, us), (_, cores))| format!("{role} {us:.0} µs ({cores:.2} cores)"))
            .collect();
        parts.join(", ")
    }

    pub fn total_us(&self) -> f64 {
        self.us_per_msg.iter().map(|(_, us)| us).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_cpu_time_and_it_grows() {
        let me = std::process::id();
        let before = cpu_seconds(me).unwrap();
        let mut x = 0u64;
        let t = std::time::Instant::now();
        while t.elapsed() < std::time::Duration::from_millis(300) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let after = cpu_seconds(me).unwrap();
        assert!(after > before, "{before} → {after}");
    }

    #[test]
    fn unknown_process_is_none() {
        assert!(cpu_seconds(u32::MAX).is_none());
        assert!(find_process("no-such-command-xyz").is_none());
    }

    #[test]
    fn spreads_cpu_over_messages() {
        let me = std::process::id();
        let s = Watched::new().with("self", Some(me)).start();
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < std::time::Duration::from_millis(200) {
            x = x.wrapping_add(1);
        }
        std::hint::black_box(x);
        let used = s.finish(1000);
        assert_eq!(used.us_per_msg.len(), 1);
        // ~200 ms of CPU over 1000 messages ≈ 200 µs each (ticks are 10 ms).
        assert!(used.total_us() > 100.0, "{}", used.describe());
        assert!(used.describe().starts_with("self "));
    }
}
