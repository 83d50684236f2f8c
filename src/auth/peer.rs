//! Peer authentication on the daemon's Unix socket, like PostgreSQL's `peer`: the
//! kernel tells the daemon which Unix user opened a connection (`SO_PEERCRED`), and
//! that decides which appliance account the connection's requests act as.
//!
//! The rule: root and the daemon's own user act as the built-in administrator
//! [`LOCAL_ADMIN`] (they can read the database and keys anyway); a Unix user listed in
//! `server.peer_users` acts as the appliance user it names; everyone else is refused.
//! Only the decision lives here, and the Unix user and group name look-ups; the HTTP
//! boundary (`http::auth`) turns it into a [`super::Principal`].

use std::ffi::{CStr, CString};

/// The built-in local administrator: the account root and the daemon's own user act
/// as on the Unix socket. It has no password (its stored hash, `!`, matches none), owns
/// no API keys, and no person can create an account of that name, so nothing but the
/// socket reaches it. Disabling it turns peer authentication off for administrators.
pub const LOCAL_ADMIN: &str = "local-admin";

/// The stored password hash of [`LOCAL_ADMIN`]: not a PHC string, so no password
/// verifies against it.
pub const NO_PASSWORD: &str = "!";

/// Which account a connection's Unix user acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerAccount<'a> {
    /// Root or the daemon's own user: [`LOCAL_ADMIN`].
    LocalAdmin,
    /// A Unix user listed in `server.peer_users`: the appliance user of this name.
    User(&'a str),
    /// Nobody may act for this Unix user; the text says why, for the 401.
    Refused(String),
}

/// Whether `uid` acts as [`LOCAL_ADMIN`]: root, or the user the daemon runs as.
pub fn is_local_admin(uid: u32, daemon_uid: u32) -> bool {
    uid == 0 || uid == daemon_uid
}

/// Decides who a peer acts as. `unix_name` is the peer's user name (`None` when the
/// system does not know the uid, or it was not looked up); `mapped` answers
/// `server.peer_users` for a name.
pub fn account_for<'a>(
    uid: u32,
    daemon_uid: u32,
    unix_name: Option<&str>,
    mapped: impl FnOnce(&str) -> Option<&'a str>,
) -> PeerAccount<'a> {
    if is_local_admin(uid, daemon_uid) {
        return PeerAccount::LocalAdmin;
    }
    let Some(name) = unix_name else {
        return PeerAccount::Refused(format!(
            "Unix uid {uid} may not use this socket without a credential (it has no user name \
             to list in server.peer_users); send an API key"
        ));
    };
    match mapped(name) {
        Some(user) if user.eq_ignore_ascii_case(LOCAL_ADMIN) => PeerAccount::Refused(format!(
            "server.peer_users maps Unix user `{name}` to `{LOCAL_ADMIN}`, which only root and \
             the daemon's own user act as; map it to a named administrator instead"
        )),
        Some(user) => PeerAccount::User(user),
        None => PeerAccount::Refused(format!(
            "Unix user `{name}` (uid {uid}) may not use this socket without a credential: an \
             administrator can add it to server.peer_users; or send an API key"
        )),
    }
}

/// The user name of `uid` from the system's user database (`/etc/passwd`, LDAP, …),
/// `None` when it has none. May block on a network directory: call it from a blocking
/// thread.
pub fn user_name(uid: u32) -> std::io::Result<Option<String>> {
    let mut buffer = vec![0u8; 1024];
    loop {
        // SAFETY: `passwd` is plain C data for which all-zero is a valid value;
        // getpwuid_r writes only into `entry`, `buffer` (within the given length) and
        // `found`, all of which outlive the call.
        #[allow(unsafe_code)]
        let (code, entry, found) = unsafe {
            let mut entry: libc::passwd = std::mem::zeroed();
            let mut found: *mut libc::passwd = std::ptr::null_mut();
            let code = libc::getpwuid_r(
                uid,
                &mut entry,
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                &mut found,
            );
            (code, entry, found)
        };
        if code == libc::ERANGE && buffer.len() < 1 << 20 {
            buffer.resize(buffer.len() * 2, 0);
            continue;
        }
        // Some systems report "no such entry" as an error instead of a null result.
        if code == libc::ENOENT || code == libc::ESRCH {
            return Ok(None);
        }
        if code != 0 {
            return Err(std::io::Error::from_raw_os_error(code));
        }
        if found.is_null() || entry.pw_name.is_null() {
            return Ok(None);
        }
        // SAFETY: on success `pw_name` points to a NUL-terminated string inside
        // `buffer`, which is still alive and unchanged.
        #[allow(unsafe_code)]
        let name = unsafe { CStr::from_ptr(entry.pw_name) };
        return Ok(Some(name.to_string_lossy().into_owned()));
    }
}

/// The id of the group `name` (or `name` itself when it is a number), `None` when the
/// system has no such group.
pub fn group_id(name: &str) -> std::io::Result<Option<u32>> {
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(Some(gid));
    }
    let Ok(c_name) = CString::new(name) else {
        return Ok(None);
    };
    let mut buffer = vec![0u8; 1024];
    loop {
        // SAFETY: as in `user_name`: all-zero `group` is valid, and getgrnam_r writes
        // only into memory that outlives the call; `c_name` is NUL-terminated.
        #[allow(unsafe_code)]
        let (code, entry, found) = unsafe {
            let mut entry: libc::group = std::mem::zeroed();
            let mut found: *mut libc::group = std::ptr::null_mut();
            let code = libc::getgrnam_r(
                c_name.as_ptr(),
                &mut entry,
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                &mut found,
            );
            (code, entry, found)
        };
        if code == libc::ERANGE && buffer.len() < 1 << 20 {
            buffer.resize(buffer.len() * 2, 0);
            continue;
        }
        // Some systems report "no such entry" as an error instead of a null result.
        if code == libc::ENOENT || code == libc::ESRCH {
            return Ok(None);
        }
        if code != 0 {
            return Err(std::io::Error::from_raw_os_error(code));
        }
        return Ok((!found.is_null()).then_some(entry.gr_gid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAEMON: u32 = 991;

    fn map(name: &str) -> Option<&'static str> {
        match name {
            "alice" => Some("alice"),
            "bob" => Some("robert"),
            "eve" => Some("Local-Admin"),
            _ => None,
        }
    }

    #[test]
    fn root_and_the_daemon_user_act_as_the_local_administrator() {
        assert_eq!(account_for(0, DAEMON, None, map), PeerAccount::LocalAdmin);
        assert_eq!(
            account_for(DAEMON, DAEMON, Some("appliance"), map),
            PeerAccount::LocalAdmin
        );
        // Even a mapping cannot make them someone else.
        assert_eq!(
            account_for(0, DAEMON, Some("alice"), map),
            PeerAccount::LocalAdmin
        );
    }

    #[test]
    fn listed_users_act_as_their_appliance_user_and_others_are_refused() {
        assert_eq!(
            account_for(1000, DAEMON, Some("alice"), map),
            PeerAccount::User("alice")
        );
        assert_eq!(
            account_for(1001, DAEMON, Some("bob"), map),
            PeerAccount::User("robert")
        );
        let PeerAccount::Refused(why) = account_for(1002, DAEMON, Some("mallory"), map) else {
            panic!("an unlisted user must be refused");
        };
        assert!(
            why.contains("mallory") && why.contains("server.peer_users"),
            "{why}"
        );
        assert!(matches!(
            account_for(4242, DAEMON, None, map),
            PeerAccount::Refused(_)
        ));
        // Nobody but root and the daemon's user becomes the local administrator.
        let PeerAccount::Refused(why) = account_for(1003, DAEMON, Some("eve"), map) else {
            panic!("a mapping to local-admin must be refused");
        };
        assert!(why.contains(LOCAL_ADMIN), "{why}");
    }

    #[test]
    fn system_users_and_groups_resolve() {
        assert_eq!(user_name(0).unwrap().as_deref(), Some("root"));
        assert_eq!(group_id("root").unwrap(), Some(0));
        assert_eq!(group_id("1234").unwrap(), Some(1234));
        assert_eq!(group_id("no-such-group-appliance").unwrap(), None);
        // An unassigned uid has no name (not an error).
        assert_eq!(user_name(3_999_999_999).unwrap(), None);
    }
}
