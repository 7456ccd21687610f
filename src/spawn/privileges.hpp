// Dropping what a cell's proxy must not have (DESIGN.md §10): another
// user, no capabilities, no_new_privs. Called in the forked child before it
// executes the proxy; async-signal-safe calls only.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

namespace dnsgate::spawn {

struct UserIds {
  uid_t uid = 0;
  gid_t gid = 0;
  std::string name;
};

// Looks `user` up (a name, or a numeric uid); none and `error` set when
// there is no such user. In the parent: getpwnam is not safe after fork.
std::optional<UserIds> resolve_user(const std::string& user, std::string& error);

// setgroups to the user's group alone, setgid, setuid; every capability out
// of the bounding and ambient sets first; then PR_SET_NO_NEW_PRIVS. Returns
// the name of the call that failed, or nullptr.
const char* drop_privileges(const UserIds& ids) noexcept;

}  // namespace dnsgate::spawn
