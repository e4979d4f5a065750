//! `script-user=` and `script-group=` of `WSGIDaemonProcess`: before the Apache child sends a
//! request to such a group, the WSGI script and the directory holding it must belong to that
//! user (or group) and must not be writable by others, so that only that user (or the group's
//! members) decide what code the group's processes run. Otherwise the request is refused with
//! 403. The rules and log messages are C mod_wsgi 4.9.4's; this module decides, the Apache layer
//! stats the files.

use crate::config::daemon::DaemonOptions;

/// Who must own the scripts a group runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptOwner {
    /// `script-user=`: the owner of the script and of its directory.
    User(String),
    /// `script-group=`: the group of the script and of its directory.
    Group(String),
}

impl ScriptOwner {
    /// The requirement a group's options make, if any (the parser allows at most one).
    pub fn of(options: &DaemonOptions) -> Option<ScriptOwner> {
        match (&options.script_user, &options.script_group) {
            (Some(user), _) => Some(ScriptOwner::User(user.name.clone())),
            (None, Some(group)) => Some(ScriptOwner::Group(group.name.clone())),
            (None, None) => None,
        }
    }
}

/// What a stat of a file says that matters here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileFacts {
    pub uid: u32,
    pub gid: u32,
    /// The permission bits (`st_mode & 0o7777`).
    pub mode: u32,
}

const GROUP_WRITE: u32 = 0o020;
const WORLD_WRITE: u32 = 0o002;

/// Why a request is refused; the message is logged with the path it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// About the script: logged with the script's path.
    Script(String),
    /// The directory holding the script could not be examined: logged with its path.
    Parent(String),
}

/// Names of users and groups by id (the system's account database in the server).
pub struct Names<'a> {
    pub user: &'a dyn Fn(u32) -> Option<String>,
    pub group: &'a dyn Fn(u32) -> Option<String>,
}

/// Checks the script (`script`, None when it could not be examined) and then its directory
/// (`parent`, asked for only when the script passed; None when it could not be examined).
pub fn check(
    owner: &ScriptOwner,
    script: Option<FileFacts>,
    parent: &dyn Fn() -> Option<FileFacts>,
    names: &Names<'_>,
) -> Result<(), Refusal> {
    let refuse = |msg: &str| Err(Refusal::Script(msg.to_string()));
    match owner {
        ScriptOwner::User(required) => {
            let Some(script) = script else {
                return refuse("User information not available for WSGI script file");
            };
            let Some(name) = (names.user)(script.uid) else {
                return refuse(&format!(
                    "Couldn't determine owner of WSGI script file, uid={}",
                    script.uid
                ));
            };
            if &name != required {
                return refuse(&format!(
                    "Owner of WSGI script file does not match required user for daemon \
                     process, user={name}"
                ));
            }
            if script.mode & GROUP_WRITE != 0 {
                return refuse("WSGI script file is writable to group");
            }
            if script.mode & WORLD_WRITE != 0 {
                return refuse("WSGI script file is writable to world");
            }
            let dir = stat_parent(parent)?;
            let Some(name) = (names.user)(dir.uid) else {
                return refuse(&format!(
                    "Couldn't determine owner of parent directory of WSGI script file, uid={}",
                    dir.uid
                ));
            };
            if &name != required {
                return refuse(&format!(
                    "Owner of parent directory of WSGI script file does not match required \
                     user for daemon process, user={name}"
                ));
            }
            if dir.mode & WORLD_WRITE != 0 {
                return refuse("Parent directory of WSGI script file is writable to world");
            }
            if dir.mode & GROUP_WRITE != 0 {
                return refuse("Parent directory of WSGI script file is writable to group");
            }
        }
        ScriptOwner::Group(required) => {
            let Some(script) = script else {
                return refuse("Group information not available for WSGI script file");
            };
            let Some(name) = (names.group)(script.gid) else {
                return refuse(&format!(
                    "Couldn't determine group of WSGI script file, gid={}",
                    script.gid
                ));
            };
            if &name != required {
                return refuse(&format!(
                    "Group of WSGI script file does not match required group for daemon \
                     process, group={name}"
                ));
            }
            // Group members may write: the group is who decides.
            if script.mode & WORLD_WRITE != 0 {
                return refuse("WSGI script file is writable to world");
            }
            let dir = stat_parent(parent)?;
            let Some(name) = (names.group)(dir.gid) else {
                return refuse(&format!(
                    "Couldn't determine group of parent directory of WSGI script file, gid={}",
                    dir.gid
                ));
            };
            if &name != required {
                return refuse(&format!(
                    "Group of parent directory of WSGI script file does not match required \
                     group for daemon process, group={name}"
                ));
            }
            if dir.mode & WORLD_WRITE != 0 {
                return refuse("Parent directory of WSGI script file is writable to world");
            }
        }
    }
    Ok(())
}

fn stat_parent(parent: &dyn Fn() -> Option<FileFacts>) -> Result<FileFacts, Refusal> {
    parent().ok_or_else(|| {
        Refusal::Parent("Unable to stat parent directory of WSGI script".to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user_name(uid: u32) -> Option<String> {
        match uid {
            0 => Some("root".into()),
            33 => Some("www-data".into()),
            1000 => Some("alice".into()),
            _ => None,
        }
    }

    fn group_name(gid: u32) -> Option<String> {
        match gid {
            0 => Some("root".into()),
            33 => Some("www-data".into()),
            100 => Some("users".into()),
            _ => None,
        }
    }

    const NAMES: Names<'static> = Names {
        user: &user_name,
        group: &group_name,
    };

    fn file(uid: u32, gid: u32, mode: u32) -> Option<FileFacts> {
        Some(FileFacts { uid, gid, mode })
    }

    fn run(owner: &ScriptOwner, script: Option<FileFacts>, dir: Option<FileFacts>) -> String {
        match check(owner, script, &|| dir, &NAMES) {
            Ok(()) => "ok".into(),
            Err(Refusal::Script(m)) => m,
            Err(Refusal::Parent(m)) => format!("parent: {m}"),
        }
    }

    #[test]
    fn script_user_wants_owner_and_no_group_or_world_write_on_script_and_directory() {
        let alice = ScriptOwner::User("alice".into());
        let good_dir = file(1000, 100, 0o755);
        assert_eq!(run(&alice, file(1000, 100, 0o644), good_dir), "ok");
        // The group does not matter.
        assert_eq!(
            run(&alice, file(1000, 0, 0o600), file(1000, 33, 0o700)),
            "ok"
        );
        for (script, dir, expected) in [
            (
                None,
                good_dir,
                "User information not available for WSGI script file",
            ),
            (
                file(4242, 100, 0o644),
                good_dir,
                "Couldn't determine owner of WSGI script file, uid=4242",
            ),
            (
                file(33, 100, 0o644),
                good_dir,
                "Owner of WSGI script file does not match required user for daemon process, \
                 user=www-data",
            ),
            (
                file(1000, 100, 0o664),
                good_dir,
                "WSGI script file is writable to group",
            ),
            (
                file(1000, 100, 0o646),
                good_dir,
                "WSGI script file is writable to world",
            ),
            (
                file(1000, 100, 0o644),
                None,
                "parent: Unable to stat parent directory of WSGI script",
            ),
            (
                file(1000, 100, 0o644),
                file(4242, 100, 0o755),
                "Couldn't determine owner of parent directory of WSGI script file, uid=4242",
            ),
            (
                file(1000, 100, 0o644),
                file(0, 100, 0o755),
                "Owner of parent directory of WSGI script file does not match required user \
                 for daemon process, user=root",
            ),
            (
                file(1000, 100, 0o644),
                file(1000, 100, 0o757),
                "Parent directory of WSGI script file is writable to world",
            ),
            (
                file(1000, 100, 0o644),
                file(1000, 100, 0o775),
                "Parent directory of WSGI script file is writable to group",
            ),
        ] {
            assert_eq!(run(&alice, script, dir), expected);
        }
    }

    #[test]
    fn script_group_wants_group_and_no_world_write_on_script_and_directory() {
        let users = ScriptOwner::Group("users".into());
        // Group members may write; the owner does not matter.
        assert_eq!(run(&users, file(0, 100, 0o664), file(33, 100, 0o775)), "ok");
        let good_dir = file(0, 100, 0o775);
        for (script, dir, expected) in [
            (
                None,
                good_dir,
                "Group information not available for WSGI script file",
            ),
            (
                file(0, 4242, 0o644),
                good_dir,
                "Couldn't determine group of WSGI script file, gid=4242",
            ),
            (
                file(0, 33, 0o644),
                good_dir,
                "Group of WSGI script file does not match required group for daemon process, \
                 group=www-data",
            ),
            (
                file(0, 100, 0o666),
                good_dir,
                "WSGI script file is writable to world",
            ),
            (
                file(0, 100, 0o644),
                None,
                "parent: Unable to stat parent directory of WSGI script",
            ),
            (
                file(0, 100, 0o644),
                file(0, 4242, 0o755),
                "Couldn't determine group of parent directory of WSGI script file, gid=4242",
            ),
            (
                file(0, 100, 0o644),
                file(0, 0, 0o755),
                "Group of parent directory of WSGI script file does not match required group \
                 for daemon process, group=root",
            ),
            (
                file(0, 100, 0o644),
                file(0, 100, 0o777),
                "Parent directory of WSGI script file is writable to world",
            ),
        ] {
            assert_eq!(run(&users, script, dir), expected);
        }
    }

    #[test]
    fn the_directory_is_examined_only_after_the_script_passed() {
        let asked = std::cell::Cell::new(false);
        let parent = || {
            asked.set(true);
            None
        };
        let alice = ScriptOwner::User("alice".into());
        let r = check(&alice, file(33, 0, 0o644), &parent, &NAMES);
        assert!(matches!(r, Err(Refusal::Script(_))));
        assert!(!asked.get());
    }

    #[test]
    fn the_requirement_comes_from_the_group_options() {
        use crate::config::accounts::{Account, GroupId};
        let mut o = DaemonOptions::default();
        assert_eq!(ScriptOwner::of(&o), None);
        o.script_group = Some(GroupId {
            gid: 100,
            name: "users".into(),
        });
        assert_eq!(
            ScriptOwner::of(&o),
            Some(ScriptOwner::Group("users".into()))
        );
        o.script_group = None;
        o.script_user = Some(Account {
            uid: 1000,
            name: "alice".into(),
            gid: 100,
            home: "/home/alice".into(),
        });
        assert_eq!(ScriptOwner::of(&o), Some(ScriptOwner::User("alice".into())));
    }
}
