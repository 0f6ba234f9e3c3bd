/*
 * rumpcomp_userfeatures_pci.h: what the rumpuser-xen platform offers a
 * rump kernel PCI build. NetBSD's librumpdev_pci includes this header from
 * sys/rump/dev/lib/libpci/pci_user.h and compiles optional code on the
 * macros it defines. The rumpcomp_pci_* functions themselves are exported
 * by rumpuser-xen (rumpuser-xen/src/rumpuser/pci.rs; on Xen over pcifront,
 * src/pv/rump_pci.rs); see docs/rumpuser.md.
 *
 * RUMPCOMP_USERFEATURE_PCI_DMAFREE
 *     rumpcomp_pci_dmafree(vaddr, size) is provided: bus_dmamem_free hands
 *     back the virtual address rumpcomp_pci_dmalloc returned and the size
 *     it asked for, and the memory returns to the platform's DMA pool.
 *
 * RUMPCOMP_USERFEATURE_PCI_IOSPACE
 *     rumpcomp_pci_iospace_init() is provided, and I/O BARs are reached
 *     with x86 in/out instructions. On Xen it raises the domain's virtual
 *     IOPL (PHYSDEVOP_set_iopl); Xen then performs the in/out the PV
 *     kernel's instructions fault on, for the ports the toolstack granted
 *     the domain (libxl grants the I/O BARs of every function passed
 *     through). Each access is a trap into Xen: correct, not fast.
 */
#ifndef RUMPUSER_XEN_RUMPCOMP_USERFEATURES_PCI_H
#define RUMPUSER_XEN_RUMPCOMP_USERFEATURES_PCI_H

#define RUMPCOMP_USERFEATURE_PCI_DMAFREE
#define RUMPCOMP_USERFEATURE_PCI_IOSPACE

#endif /* RUMPUSER_XEN_RUMPCOMP_USERFEATURES_PCI_H */
