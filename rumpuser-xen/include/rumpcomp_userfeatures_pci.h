/*
 * rumpcomp_userfeatures_pci.h: what the rumpuser-xen platform offers a
 * rump kernel PCI build. NetBSD's librumpdev_pci includes this header from
 * sys/rump/dev/lib/libpci/pci_user.h and compiles optional code on the
 * macros it defines:
 *
 * RUMPCOMP_USERFEATURE_PCI_DMAFREE
 *     the platform provides rumpcomp_pci_dmafree(paddr, size);
 *     without it the rump kernel panics when DMA memory is freed.
 *
 * RUMPCOMP_USERFEATURE_PCI_IOSPACE
 *     the platform provides rumpcomp_pci_iospace_init() and I/O BARs
 *     are reached with x86 in/out instructions.
 *
 * None of the rumpcomp_pci_* functions exist on this platform yet (see
 * docs/rumpuser.md, "What is not there yet"), so neither feature is
 * defined: a macro appears here together with the function it promises.
 * A rump PCI build does not link against this platform until then.
 */
#ifndef RUMPUSER_XEN_RUMPCOMP_USERFEATURES_PCI_H
#define RUMPUSER_XEN_RUMPCOMP_USERFEATURES_PCI_H

#endif /* RUMPUSER_XEN_RUMPCOMP_USERFEATURES_PCI_H */
