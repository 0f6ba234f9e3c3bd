/*
 * rumpcomp_userfeatures_pci.h: what the rumpuser-xen platform offers a
 * rump kernel PCI build (NetBSD's librumpdev_pci includes this header from
 * sys/rump/dev/lib/libpci/pci_user.h and compiles optional code on these
 * macros).
 *
 * RUMPCOMP_USERFEATURE_PCI_DMAFREE
 *     DMA memory can be given back: the platform provides
 *     rumpcomp_pci_dmafree(paddr, size).
 *
 * RUMPCOMP_USERFEATURE_PCI_IOSPACE
 *     PCI I/O port space is reachable: the platform provides
 *     rumpcomp_pci_iospace_init(), and the rump kernel's bus_space code
 *     uses x86 in/out instructions for I/O BARs (a PV domain may use them
 *     for the ports Xen lets it access, ioports= in the xl config).
 *
 * The rumpcomp_pci_* functions themselves are not provided yet; see
 * docs/rumpuser.md. A rump PCI build against this header links only once
 * they are.
 */
#ifndef RUMPUSER_XEN_RUMPCOMP_USERFEATURES_PCI_H
#define RUMPUSER_XEN_RUMPCOMP_USERFEATURES_PCI_H

#define RUMPCOMP_USERFEATURE_PCI_DMAFREE
#define RUMPCOMP_USERFEATURE_PCI_IOSPACE

#endif /* RUMPUSER_XEN_RUMPCOMP_USERFEATURES_PCI_H */
