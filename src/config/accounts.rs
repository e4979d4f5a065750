//! Users and groups named in the configuration (`user=`, `group=`, `#uid`, `#gid`), resolved
//! through the system's account database with the re-entrant libc look-ups, so that a name that
//! does not exist fails the configuration check instead of the daemon process start.
//!
//! A spec is either a name or `#` followed by the numeric id, as in Apache's own `User`/`Group`.
//! A numeric id must have an entry too: the name is needed for `initgroups` and for messages.
//! Errors are plain descriptions; the caller adds the directive and the option.

use std::ffi::{CStr, CString};
use std::os::raw::c_char;

/// A user from the passwd database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub uid: u32,
    pub name: String,
    /// The user's primary group.
    pub gid: u32,
    pub home: String,
}

/// A group from the group database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupId {
    pub gid: u32,
    pub name: String,
}

/// What a user or group spec asks for.
enum Spec {
    Name(CString),
    Id(u32),
}

fn parse_spec(kind: &str, spec: &str) -> Result<Spec, String> {
    if spec.is_empty() {
        return Err(format!("the {kind} must not be empty"));
    }
    if let Some(digits) = spec.strip_prefix('#') {
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "'{spec}' is not a {kind} name or '#' followed by a numeric id"
            ));
        }
        return digits
            .parse::<u32>()
            .map(Spec::Id)
            .map_err(|_| format!("'{spec}': the numeric id is too large"));
    }
    CString::new(spec)
        .map(Spec::Name)
        .map_err(|_| format!("'{spec}' is not a valid {kind} name"))
}

/// The first buffer size for a `get*_r` call: the system's hint, else a page.
fn initial_buffer(hint: libc::c_int) -> usize {
    // SAFETY: sysconf only reads a constant of the C library.
    let n = unsafe { libc::sysconf(hint) };
    if n > 0 {
        (n as usize).clamp(256, 1 << 16)
    } else {
        4096
    }
}

/// Largest buffer tried before the look-up is given up as failing.
const MAX_BUFFER: usize = 1 << 24;

/// Runs a re-entrant look-up, growing the buffer while it answers ERANGE. `call` gets the buffer
/// and returns the look-up's error code and whether an entry was found.
fn with_growing_buffer<F>(hint: libc::c_int, mut call: F) -> Result<bool, i32>
where
    F: FnMut(&mut [c_char]) -> (i32, bool),
{
    let mut buf: Vec<c_char> = vec![0; initial_buffer(hint)];
    loop {
        match call(&mut buf) {
            (0, found) => return Ok(found),
            (libc::ERANGE, _) if buf.len() < MAX_BUFFER => {
                let larger = buf.len() * 2;
                buf = vec![0; larger];
            }
            (err, _) => return Err(err),
        }
    }
}

fn describe_errno(err: i32) -> String {
    std::io::Error::from_raw_os_error(err).to_string()
}

/// Copies a C string the entry points into (inside the look-up's buffer).
///
/// # Safety
/// `p` must be null or point at a NUL-terminated string that is still alive.
unsafe fn owned(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        // SAFETY: the caller guarantees a live NUL-terminated string.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

/// Resolves `name` or `#uid` to a user.
pub fn lookup_user(spec: &str) -> Result<Account, String> {
    let wanted = parse_spec("user", spec)?;
    let mut account = None;
    let outcome = with_growing_buffer(libc::_SC_GETPW_R_SIZE_MAX, |buf| {
        // SAFETY: an all-zero passwd is a valid value to be filled in.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call and the buffer length is its real length.
        let rc = unsafe {
            match &wanted {
                Spec::Name(name) => libc::getpwnam_r(
                    name.as_ptr(),
                    &mut entry,
                    buf.as_mut_ptr(),
                    buf.len(),
                    &mut result,
                ),
                Spec::Id(uid) => {
                    libc::getpwuid_r(*uid, &mut entry, buf.as_mut_ptr(), buf.len(), &mut result)
                }
            }
        };
        if rc == 0 && !result.is_null() {
            // SAFETY: on success the entry's strings point into `buf`, which is still alive.
            account = Some(unsafe {
                Account {
                    uid: entry.pw_uid,
                    name: owned(entry.pw_name),
                    gid: entry.pw_gid,
                    home: owned(entry.pw_dir),
                }
            });
        }
        (rc, !result.is_null())
    });
    match (outcome, account) {
        (Ok(true), Some(account)) => Ok(account),
        (Ok(_), _) => Err(match wanted {
            Spec::Name(_) => format!("there is no user named '{spec}'"),
            Spec::Id(uid) => format!("there is no user with uid {uid}"),
        }),
        (Err(err), _) => Err(format!(
            "could not look up user '{spec}': {}",
            describe_errno(err)
        )),
    }
}

/// Resolves `name` or `#gid` to a group.
pub fn lookup_group(spec: &str) -> Result<GroupId, String> {
    let wanted = parse_spec("group", spec)?;
    let mut group = None;
    let outcome = with_growing_buffer(libc::_SC_GETGR_R_SIZE_MAX, |buf| {
        // SAFETY: an all-zero group is a valid value to be filled in.
        let mut entry: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call and the buffer length is its real length.
        let rc = unsafe {
            match &wanted {
                Spec::Name(name) => libc::getgrnam_r(
                    name.as_ptr(),
                    &mut entry,
                    buf.as_mut_ptr(),
                    buf.len(),
                    &mut result,
                ),
                Spec::Id(gid) => {
                    libc::getgrgid_r(*gid, &mut entry, buf.as_mut_ptr(), buf.len(), &mut result)
                }
            }
        };
        if rc == 0 && !result.is_null() {
            group = Some(GroupId {
                gid: entry.gr_gid,
                // SAFETY: on success the name points into `buf`, which is still alive.
                name: unsafe { owned(entry.gr_name) },
            });
        }
        (rc, !result.is_null())
    });
    match (outcome, group) {
        (Ok(true), Some(group)) => Ok(group),
        (Ok(_), _) => Err(match wanted {
            Spec::Name(_) => format!("there is no group named '{spec}'"),
            Spec::Id(gid) => format!("there is no group with gid {gid}"),
        }),
        (Err(err), _) => Err(format!(
            "could not look up group '{spec}': {}",
            describe_errno(err)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_by_name_and_by_uid() {
        let by_name = lookup_user("root").unwrap();
        assert_eq!(by_name.uid, 0);
        assert_eq!(by_name.gid, 0);
        assert_eq!(by_name.name, "root");
        assert!(by_name.home.starts_with('/'), "{by_name:?}");
        assert_eq!(lookup_user("#0").unwrap(), by_name);
    }

    #[test]
    fn nobody_and_nogroup() {
        let nobody = lookup_user("nobody").unwrap();
        assert_eq!(nobody.name, "nobody");
        assert_ne!(nobody.uid, 0);
        let again = lookup_user(&format!("#{}", nobody.uid)).unwrap();
        assert_eq!(again.name, "nobody");
        let nogroup = lookup_group("nogroup").unwrap();
        assert_eq!(nogroup.name, "nogroup");
        assert_eq!(lookup_group(&format!("#{}", nogroup.gid)).unwrap(), nogroup);
        assert_eq!(
            lookup_group("root").unwrap(),
            GroupId {
                gid: 0,
                name: "root".into()
            }
        );
        assert_eq!(lookup_group("#0").unwrap().name, "root");
    }

    #[test]
    fn unknown_names_and_ids_are_errors() {
        let e = lookup_user("no-such-user-xyz").unwrap_err();
        assert!(e.contains("no user named 'no-such-user-xyz'"), "{e}");
        let e = lookup_user("#4000000").unwrap_err();
        assert!(e.contains("no user with uid 4000000"), "{e}");
        let e = lookup_group("no-such-group-xyz").unwrap_err();
        assert!(e.contains("no group named 'no-such-group-xyz'"), "{e}");
        let e = lookup_group("#4000000").unwrap_err();
        assert!(e.contains("no group with gid 4000000"), "{e}");
    }

    #[test]
    fn malformed_specs_are_errors() {
        for spec in ["", "#", "#-1", "#12a", "#99999999999", "a\0b"] {
            assert!(lookup_user(spec).is_err(), "{spec:?}");
            assert!(lookup_group(spec).is_err(), "{spec:?}");
        }
        assert!(lookup_user("").unwrap_err().contains("must not be empty"));
    }
}
