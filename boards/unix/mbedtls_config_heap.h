/* mbedTLS configuration of the unix port with TLS in the MicroPython heap, as on an
 * RP2040 (tools/build_firmware.py --tls-heap, which also sets MICROPY_TRACKED_ALLOC=1).
 *
 * MicroPython's bare-metal mbedTLS settings (extmod/mbedtls/mbedtls_config_common.h)
 * make mbedTLS allocate with m_tracked_calloc / m_tracked_free, i.e. from the GC heap,
 * so `-X heapsize` bounds the TLS session too (about 27 KB: record buffers, the
 * handshake, the certificate chain). The unix port's own settings are kept, and so is
 * its entropy source: extmod/mbedtls/mbedtls_alt.c defines the bare-metal entropy hook
 * only from the port's own config, as the unix coverage build also finds. */
#ifndef MPOCPP_MBEDTLS_CONFIG_HEAP_H
#define MPOCPP_MBEDTLS_CONFIG_HEAP_H

#define MICROPY_MBEDTLS_CONFIG_BARE_METAL (1)
#include "mbedtls/mbedtls_config_port.h" /* ports/unix/mbedtls/ */

#undef MBEDTLS_ENTROPY_HARDWARE_ALT
#undef MBEDTLS_NO_PLATFORM_ENTROPY

#endif
