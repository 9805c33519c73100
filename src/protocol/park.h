// The checkpoint handshake between isoboxd and envd (docs/architecture.md, "Life of a
// checkpoint"). A checkpoint (CRIU) can only save what lives in the sandbox's own
// namespaces; envd's listening socket and its connections come from the host's network
// namespace, and its seccomp listener cannot be saved at all. So before a checkpoint
// isoboxd asks envd to park:
//   POST /isobox/park (access token; never relayed from clients): envd answers 204, then
//   closes its connections, its listening socket and its seccomp listener, and puts one
//   end of a socketpair at fd 3 (where the listener was) and the other at kParkPeerFd.
// To unpark (after the checkpoint, or in the restored sandbox) isoboxd takes kParkPeerFd
// with pidfd_getfd and sends a listening socket over it (SCM_RIGHTS, one byte of data);
// envd installs it at fd 3 and accepts again. The byte says why: kUnparkRunning after a
// checkpoint that failed (the processes ran on), kUnparkRestored in a restored sandbox,
// where envd also installs a new sysinfo filter on itself (its old listener was not
// saved) and answers over the socketpair with kUnparkSysinfo and that filter's listener,
// or kUnparkNoSysinfo when it could not. kUnparkCloned is kUnparkRestored in a sandbox
// restored from another one's checkpoint (a snapshot or a fork): the byte is followed by
// a JSON object {"sandboxId", "accessToken", "envVars": {..}} that becomes envd's identity
// (its token replaced, the variables added) before it accepts its first connection.
#pragma once

#include <string_view>

namespace isobox::protocol {

inline constexpr std::string_view kParkPath = "/isobox/park";
inline constexpr int kParkPeerFd = 62;
inline constexpr char kUnparkRunning = 'L';
inline constexpr char kUnparkRestored = 'R';
inline constexpr char kUnparkCloned = 'C';
inline constexpr char kUnparkSysinfo = 'S';
inline constexpr char kUnparkNoSysinfo = 'N';

}  // namespace isobox::protocol
