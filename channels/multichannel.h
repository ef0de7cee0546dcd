/* SPDX-License-Identifier: MIT */
/*
 * Multi-channel TCP: the data path (<ferry/datapath.h>) over N extra stream
 * connections to the address the main stream uses (tcp: or unix:). The wire
 * protocol (handshake, packets, sync points) is in docs/data-path.md.
 *
 * Each lane is one connection. Pages leave source guest RAM through sendmsg
 * iovecs (optionally MSG_ZEROCOPY) and arrive through recvmsg iovecs that
 * point at their final place in destination guest RAM: the header and run
 * table of a packet are read first, checked, and only then is the payload
 * read, straight into the pages it names. No page byte is copied in user
 * space on either side, unless the lanes run TLS (ferry_dp_*_attr.tls):
 * then each lane's TLS handshake comes first, and GnuTLS encrypts the pages
 * into its records and decrypts them into its buffer (a copy, counted in
 * the lane's memcpy_bytes); MSG_ZEROCOPY is refused with TLS.
 *
 * The engine picks these ops for tcp: and unix: URIs when
 * ferry_params.channels > 0; an embedder never calls them directly.
 */
#ifndef FERRY_MULTICHANNEL_H
#define FERRY_MULTICHANNEL_H

#include <ferry/datapath.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The data path's name on the wire. */
#define FERRY_MC_NAME "tcp-multi"

/* The sending side; see struct ferry_dp_source_ops for every member's thread. */
extern const struct ferry_dp_source_ops ferry_mc_source_ops;

/* The receiving side; see struct ferry_dp_dest_ops. */
extern const struct ferry_dp_dest_ops ferry_mc_dest_ops;

#ifdef __cplusplus
}
#endif
#endif
