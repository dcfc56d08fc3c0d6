//! What benches and measuring tests read about this process and machine (Linux `/proc`; empty or `None`
//! elsewhere), and `median`.

/// A `kB` field of `/proc/self/status` (`VmHWM` = peak RSS, `VmRSS` = RSS now), in MiB.
pub fn proc_status_mib(key: &str) -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Reset the peak-RSS high-water mark (`VmHWM`); false where the kernel does not allow it.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The 1-, 5- and 15-minute load averages.
pub fn loadavg() -> Vec<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .filter_map(|x| x.parse().ok())
        .collect()
}

/// Fields of `/proc/self/stat` after the command name (which is in parentheses and may hold spaces):
/// index 0 is the state, 7 minor faults, 11 utime, 12 stime.
fn stat_fields() -> Vec<String> {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    stat.rsplit(')').next().unwrap_or("").split_whitespace().map(String::from).collect()
}

/// Minor page faults of this process so far.
pub fn minor_faults() -> Option<u64> {
    stat_fields().get(7)?.parse().ok()
}

/// User + system CPU seconds of this process (clock ticks of 1/100 s).
pub fn cpu_seconds() -> f64 {
    let f = stat_fields();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// The median (mean of the middle two for an even count); NaN for no values.
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_proc() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![]).is_nan());
        if cfg!(target_os = "linux") {
            assert!(proc_status_mib("VmRSS").unwrap() > 0.0);
            assert!(minor_faults().unwrap() > 0);
            assert_eq!(loadavg().len(), 3);
        }
    }
}
