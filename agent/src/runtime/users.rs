//! Pure resolution of a container `user` (`name`, `name:group`, `uid`, `uid:gid`) and `group_add`
//! against the text of an image's `/etc/passwd` and `/etc/group`, by Docker's (runc's) rules.

/// The identity a container process runs with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups: the user's groups in `/etc/group` (when no group was given), then
    /// `group_add`, without duplicates.
    pub additional_gids: Vec<u32>,
}

/// Why a user or group could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("user `{0}` is not in the image's /etc/passwd")]
    NoSuchUser(String),
    #[error("group `{0}` is not in the image's /etc/group")]
    NoSuchGroup(String),
    #[error("bad user `{0}`: expected name, name:group, uid or uid:gid")]
    Malformed(String),
}

/// One line of `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// One line of `/etc/group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// Parses `/etc/passwd` text; comments, blank and malformed lines are skipped (as libc does).
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(PasswdEntry {
                name: (*f.first()?).to_owned(),
                uid: f.get(2)?.trim().parse().ok()?,
                gid: f.get(3)?.trim().parse().ok()?,
            })
        })
        .collect()
}

/// Parses `/etc/group` text; comments, blank and malformed lines are skipped.
pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(GroupEntry {
                name: (*f.first()?).to_owned(),
                gid: f.get(2)?.trim().parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Whether resolving needs the image's files: when a user or `group_add` is given. With neither
/// the container runs as root with no supplementary groups, and the image is not read (Docker
/// would also give root the groups `/etc/group` lists it in).
pub fn needs_lookup(user: Option<&str>, group_add: &[String]) -> bool {
    user.is_some() || !group_add.is_empty()
}

fn numeric(s: &str) -> Option<u32> {
    s.parse().ok()
}

fn group_id(name: &str, groups: &[GroupEntry]) -> Result<u32, UserError> {
    if let Some(g) = groups.iter().find(|g| g.name == name) {
        return Ok(g.gid);
    }
    if name == "root" {
        return Ok(0);
    }
    numeric(name).ok_or_else(|| UserError::NoSuchGroup(name.to_owned()))
}

/// Resolves `user` (none means root) and `group_add` against the image's passwd and group text
/// (`None` when the image has no such file).
///
/// Docker's rules: a name must exist in passwd; a uid need not (its gid is then 0). With no
/// group given, the gid is the passwd entry's and the supplementary groups are every group that
/// lists the user's name. With a group given, the gid is that group's and there are no implied
/// supplementary groups. `group_add` entries are names or numbers.
pub fn resolve_user(
    user: Option<&str>,
    group_add: &[String],
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<ResolvedUser, UserError> {
    let users = passwd.map(parse_passwd).unwrap_or_default();
    let groups = group.map(parse_group).unwrap_or_default();
    let spec = user.unwrap_or("").trim();
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if g.is_some_and(str::is_empty) || g.is_some_and(|g| g.contains(':')) {
        return Err(UserError::Malformed(spec.to_owned()));
    }
    let u = if u.is_empty() { "0" } else { u };
    let entry = users
        .iter()
        .find(|e| e.name == u)
        .or_else(|| numeric(u).and_then(|uid| users.iter().find(|e| e.uid == uid)));
    let mut out = match (entry, numeric(u)) {
        (Some(e), _) => ResolvedUser {
            uid: e.uid,
            gid: e.gid,
            additional_gids: Vec::new(),
        },
        (None, Some(uid)) => ResolvedUser {
            uid,
            gid: 0,
            additional_gids: Vec::new(),
        },
        (None, None) if u == "root" => ResolvedUser::default(),
        (None, None) => return Err(UserError::NoSuchUser(u.to_owned())),
    };
    match g {
        Some(g) => out.gid = group_id(g, &groups)?,
        None => {
            if let Some(e) = entry {
                out.additional_gids = groups
                    .iter()
                    .filter(|g| g.members.contains(&e.name))
                    .map(|g| g.gid)
                    .collect();
            }
        }
    }
    for name in group_add {
        out.additional_gids.push(group_id(name.trim(), &groups)?);
    }
    let mut seen = std::collections::HashSet::new();
    out.additional_gids.retain(|g| seen.insert(*g));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        # a comment\n\
        \n\
        mysql:x:42434:42434::/var/lib/mysql:/usr/sbin/nologin\n\
        broken line\n\
        nova:x:42436:42436::/var/lib/nova:/usr/sbin/nologin\n";
    const GROUP: &str = "root:x:0:\n\
        kolla:x:42400:mysql,nova\n\
        mysql:x:42434:\n\
        nova:x:42436:\n\
        libvirt:x:42473:nova\n\
        qemu:x:42427:\n";

    fn resolve(user: Option<&str>, add: &[&str]) -> Result<ResolvedUser, UserError> {
        let add: Vec<String> = add.iter().map(|s| s.to_string()).collect();
        resolve_user(user, &add, Some(PASSWD), Some(GROUP))
    }

    fn ids(uid: u32, gid: u32, extra: &[u32]) -> ResolvedUser {
        ResolvedUser {
            uid,
            gid,
            additional_gids: extra.to_vec(),
        }
    }

    #[test]
    fn parses_files_and_skips_junk() {
        let users = parse_passwd(PASSWD);
        assert_eq!(users.len(), 3);
        assert_eq!(
            users[1],
            PasswdEntry {
                name: "mysql".into(),
                uid: 42434,
                gid: 42434
            }
        );
        let groups = parse_group(GROUP);
        assert_eq!(groups[1].members, vec!["mysql", "nova"]);
        assert!(groups[0].members.is_empty());
    }

    #[test]
    fn a_name_gets_its_gid_and_supplementary_groups() {
        assert_eq!(
            resolve(Some("nova"), &[]),
            Ok(ids(42436, 42436, &[42400, 42473]))
        );
        assert_eq!(resolve(Some("mysql"), &[]), Ok(ids(42434, 42434, &[42400])));
    }

    #[test]
    fn a_uid_in_passwd_is_that_user() {
        assert_eq!(resolve(Some("42434"), &[]), Ok(ids(42434, 42434, &[42400])));
    }

    #[test]
    fn an_unknown_uid_runs_with_gid_0() {
        assert_eq!(resolve(Some("1000"), &[]), Ok(ids(1000, 0, &[])));
        assert_eq!(
            resolve_user(Some("1000"), &[], None, None),
            Ok(ids(1000, 0, &[]))
        );
    }

    #[test]
    fn an_explicit_group_replaces_the_implied_ones() {
        assert_eq!(resolve(Some("nova:kolla"), &[]), Ok(ids(42436, 42400, &[])));
        assert_eq!(resolve(Some("nova:5"), &[]), Ok(ids(42436, 5, &[])));
        assert_eq!(resolve(Some("1000:100"), &[]), Ok(ids(1000, 100, &[])));
        assert_eq!(resolve(Some("root:root"), &[]), Ok(ids(0, 0, &[])));
    }

    #[test]
    fn group_add_appends_names_and_numbers_without_duplicates() {
        assert_eq!(
            resolve(Some("mysql"), &["qemu", "42400", "7"]),
            Ok(ids(42434, 42434, &[42400, 42427, 7]))
        );
        assert_eq!(resolve(None, &["kolla"]), Ok(ids(0, 0, &[42400])));
    }

    #[test]
    fn no_user_is_root() {
        assert_eq!(resolve(None, &[]), Ok(ids(0, 0, &[])));
        assert_eq!(resolve_user(None, &[], None, None), Ok(ids(0, 0, &[])));
        // `root` needs no passwd file, as before names were resolved.
        assert_eq!(
            resolve_user(Some("root:root"), &[], None, None),
            Ok(ids(0, 0, &[]))
        );
    }

    #[test]
    fn unknown_names_are_errors_naming_them() {
        assert_eq!(
            resolve(Some("rabbitmq"), &[]),
            Err(UserError::NoSuchUser("rabbitmq".into()))
        );
        assert_eq!(
            resolve(Some("nova:wheel"), &[]),
            Err(UserError::NoSuchGroup("wheel".into()))
        );
        assert_eq!(
            resolve(Some("nova"), &["wheel"]),
            Err(UserError::NoSuchGroup("wheel".into()))
        );
        assert_eq!(
            resolve_user(Some("nova"), &[], None, None),
            Err(UserError::NoSuchUser("nova".into()))
        );
        assert_eq!(
            resolve(Some("nova:"), &[]),
            Err(UserError::Malformed("nova:".into()))
        );
    }
}
