// The channel between envd and the code interpreter it runs: an AF_UNIX SOCK_SEQPACKET
// socket pair (interpreter/access_token.h reads it, envd/interpreter_supervisor.h
// writes it). Every message starts with its tag:
//   kTokenMessageTag + the sandbox's whole access token (the tag alone: no token), from
//     envd before the interpreter starts and whenever POST /init (or a clone's identity)
//     changes it;
//   kParkTag, from envd before a checkpoint (protocol/park.h): the interpreter closes its
//     listening socket and every connection (they came from the host and cannot be
//     checkpointed), keeps its kernels, and answers kParkedTag;
//   kListenTag with one listening socket attached (SCM_RIGHTS), from envd at the unpark:
//     the interpreter accepts on it from then on.
#pragma once

namespace isobox::protocol {

inline constexpr char kTokenMessageTag = 't';
inline constexpr char kParkTag = 'p';
inline constexpr char kParkedTag = 'P';
inline constexpr char kListenTag = 'l';

}  // namespace isobox::protocol
