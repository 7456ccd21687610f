#include "spawn/privileges.hpp"

#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <vector>

namespace dnsgate::spawn {

std::optional<UserIds> resolve_user(const std::string& user, std::string& error) {
  std::vector<char> buffer(16384);
  passwd entry{};
  passwd* found = nullptr;
  uid_t numeric = 0;
  const auto [end, parse] = std::from_chars(user.data(), user.data() + user.size(), numeric);
  const bool is_number = parse == std::errc{} && end == user.data() + user.size();
  const int status = is_number
                         ? getpwuid_r(numeric, &entry, buffer.data(), buffer.size(), &found)
                         : getpwnam_r(user.c_str(), &entry, buffer.data(), buffer.size(), &found);
  if (status != 0 || found == nullptr) {
    error = "no user \"" + user + "\" on this system";
    return std::nullopt;
  }
  if (found->pw_uid == 0) {
    error = "user \"" + user + "\" is root: a cell's proxy never runs as root";
    return std::nullopt;
  }
  return UserIds{found->pw_uid, found->pw_gid, found->pw_name};
}

const char* drop_privileges(const UserIds& ids) noexcept {
  // While still root: nothing may come back through the bounding or the
  // ambient set (a later exec of a file with capabilities).
  for (int cap = 0; cap <= CAP_LAST_CAP; ++cap) {
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) return "PR_CAPBSET_DROP";
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
    return "PR_CAP_AMBIENT_CLEAR_ALL";
  }
  const gid_t groups[1] = {ids.gid};
  if (setgroups(1, groups) != 0) return "setgroups";
  if (setresgid(ids.gid, ids.gid, ids.gid) != 0) return "setresgid";
  // From uid 0 to another uid with KEEP_CAPS clear: the permitted and
  // effective sets are emptied by the kernel.
  if (setresuid(ids.uid, ids.uid, ids.uid) != 0) return "setresuid";
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return "PR_SET_NO_NEW_PRIVS";
  return nullptr;
}

}  // namespace dnsgate::spawn
