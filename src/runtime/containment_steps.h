// The functions of the containment steps (containment.cc lists them, in order, in the
// table RunContainment walks). Each runs in the cloned child, async-signal-safe, and
// returns -1 with errno set on failure.
#pragma once

#include "runtime/containment.h"

namespace isobox::runtime::steps {

int NewSession(ContainmentContext& context);
int WaitForParent(ContainmentContext& context);
int MountsPrivate(ContainmentContext& context);
int OpenMountpoint(ContainmentContext& context);
int OpenLimitsView(ContainmentContext& context);
int BecomeSandboxRoot(ContainmentContext& context);
int AttachRoot(ContainmentContext& context);
int AttachUsr(ContainmentContext& context);
int AttachAgent(ContainmentContext& context);
int MountProc(ContainmentContext& context);
int MountDev(ContainmentContext& context);
int MaskProc(ContainmentContext& context);
int MountTmp(ContainmentContext& context);
int ShowLimits(ContainmentContext& context);
int PinCpus(ContainmentContext& context);
int PivotRoot(ContainmentContext& context);
int DetachOldRoot(ContainmentContext& context);
int AttachVolumes(ContainmentContext& context);
int SetHostname(ContainmentContext& context);
int WaitForCgroup(ContainmentContext& context);
int UnshareCgroupNs(ContainmentContext& context);
int SetRlimits(ContainmentContext& context);
int BecomeAgent(ContainmentContext& context);
int NoNewPrivs(ContainmentContext& context);
int SetupFds(ContainmentContext& context);
int Seccomp(ContainmentContext& context);
int KeepListener(ContainmentContext& context);
int ExecAgent(ContainmentContext& context);

}  // namespace isobox::runtime::steps
