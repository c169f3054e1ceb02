//! Process state outside memory and fds ([`ProcState`]): what differs between two states, named
//! for a person, so that a replay or a replica going live with another working directory,
//! other credentials or other limits than the log's fails loudly instead of running on.

use crate::proto::ProcState;

/// Resource names, by RLIMIT_* number.
const LIMITS: [&str; 16] = [
    "RLIMIT_CPU",
    "RLIMIT_FSIZE",
    "RLIMIT_DATA",
    "RLIMIT_STACK",
    "RLIMIT_CORE",
    "RLIMIT_RSS",
    "RLIMIT_NPROC",
    "RLIMIT_NOFILE",
    "RLIMIT_MEMLOCK",
    "RLIMIT_AS",
    "RLIMIT_LOCKS",
    "RLIMIT_SIGPENDING",
    "RLIMIT_MSGQUEUE",
    "RLIMIT_NICE",
    "RLIMIT_RTPRIO",
    "RLIMIT_RTTIME",
];

/// How many resources [`ProcState::limits`] covers (two values each).
pub const RESOURCES: u32 = LIMITS.len() as u32;

/// The name of resource `r` (RLIMIT_NOFILE for 7).
pub fn limit_name(r: u32) -> Option<&'static str> {
    LIMITS.get(r as usize).copied()
}

const CAPS: [&str; 5] = ["inheritable", "permitted", "effective", "bounding", "ambient"];

fn limit(v: u64) -> String {
    if v == u64::MAX {
        "unlimited".into()
    } else {
        v.to_string()
    }
}

/// Each difference between `expected` (the log's) and `got` (this process's), as "what:
/// expected X, got Y". Empty when they agree.
pub fn differences(expected: &ProcState, got: &ProcState) -> Vec<String> {
    let mut out = Vec::new();
    if expected.cwd != got.cwd {
        out.push(format!(
            "working directory: the log's {}, this process's {}",
            String::from_utf8_lossy(&expected.cwd),
            String::from_utf8_lossy(&got.cwd)
        ));
    }
    let ids = ["real", "effective", "saved", "filesystem"];
    for (what, e, g) in [("uid", &expected.uids, &got.uids), ("gid", &expected.gids, &got.gids)] {
        for (i, name) in ids.iter().enumerate() {
            if e.get(i) != g.get(i) {
                out.push(format!("{name} {what}: the log's {:?}, this process's {:?}", e.get(i), g.get(i)));
            }
        }
    }
    if expected.groups != got.groups {
        out.push(format!("supplementary groups: the log's {:?}, this process's {:?}", expected.groups, got.groups));
    }
    if expected.umask != got.umask {
        out.push(format!("umask: the log's {:04o}, this process's {:04o}", expected.umask, got.umask));
    }
    for (i, name) in CAPS.iter().enumerate() {
        if expected.caps.get(i) != got.caps.get(i) {
            let show = |v: Option<&u64>| v.map_or("none".to_string(), |v| format!("{v:#x}"));
            out.push(format!(
                "{name} capabilities: the log's {}, this process's {}",
                show(expected.caps.get(i)),
                show(got.caps.get(i))
            ));
        }
    }
    for (r, name) in LIMITS.iter().enumerate() {
        let pair = |s: &ProcState| (s.limits.get(2 * r).copied(), s.limits.get(2 * r + 1).copied());
        let (e, g) = (pair(expected), pair(got));
        if e != g {
            let show = |(soft, hard): (Option<u64>, Option<u64>)| match (soft, hard) {
                (Some(s), Some(h)) => format!("{}/{}", limit(s), limit(h)),
                _ => "unknown".into(),
            };
            out.push(format!("{name} (soft/hard): the log's {}, this process's {}", show(e), show(g)));
        }
    }
    out
}

/// The names of the fields of two states that differ (for ftdbg diff: "state.cwd").
pub fn differing_fields(a: &ProcState, b: &ProcState) -> Vec<&'static str> {
    let ProcState { cwd, uids, gids, groups, umask, caps, limits } = a;
    let mut out = Vec::new();
    for (differs, name) in [
        (cwd != &b.cwd, "cwd"),
        (uids != &b.uids, "uids"),
        (gids != &b.gids, "gids"),
        (groups != &b.groups, "groups"),
        (umask != &b.umask, "umask"),
        (caps != &b.caps, "caps"),
        (limits != &b.limits, "limits"),
    ] {
        if differs {
            out.push(name);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> ProcState {
        ProcState {
            cwd: b"/srv".to_vec(),
            uids: vec![0; 4],
            gids: vec![0; 4],
            groups: vec![0],
            umask: 0o022,
            caps: vec![0, 0x1ff, 0x1ff, 0x1ff, 0],
            limits: (0..RESOURCES * 2).map(|i| u64::from(i) * 10).collect(),
        }
    }

    #[test]
    fn equal_states_have_no_difference() {
        assert!(differences(&state(), &state()).is_empty());
    }

    #[test]
    fn each_field_is_named() {
        let base = state();
        let cases: Vec<(ProcState, &str)> = vec![
            (ProcState { cwd: b"/".to_vec(), ..state() }, "working directory: the log's /srv, this process's /"),
            (ProcState { uids: vec![0, 65534, 0, 0], ..state() }, "effective uid"),
            (ProcState { gids: vec![102, 0, 0, 0], ..state() }, "real gid"),
            (ProcState { groups: vec![], ..state() }, "supplementary groups"),
            (ProcState { umask: 0o077, ..state() }, "umask: the log's 0022, this process's 0077"),
            (ProcState { caps: vec![0, 0, 0x1ff, 0x1ff, 0], ..state() }, "permitted capabilities"),
            (
                ProcState {
                    limits: {
                        let mut l = base.limits.clone();
                        l[15] = u64::MAX;
                        l
                    },
                    ..state()
                },
                "RLIMIT_NOFILE (soft/hard): the log's 140/150, this process's 140/unlimited",
            ),
        ];
        for (got, says) in cases {
            let d = differences(&base, &got);
            assert_eq!(d.len(), 1, "{d:?}");
            assert!(d[0].starts_with(says) || d[0].contains(says), "{d:?} should name {says}");
        }
    }
}
