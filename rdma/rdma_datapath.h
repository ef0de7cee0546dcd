/* SPDX-License-Identifier: MIT */
/*
 * The RDMA data path as the engine sees it: <ferry/datapath.h> ops over
 * <ferry/rdma.h>. One RC queue pair per lane; pages go by RDMA WRITE from
 * source guest RAM into destination guest RAM; a flush is a message after
 * the writes on the same queue pair, acknowledged.
 *
 * Addresses: for a URI rdma:HOST:PORT the main stream (and the TCP lanes of
 * a fallback) use TCP to HOST:PORT; the queue pairs use the rdma_cm port
 * PORT + 1 on the same host (FERRY_RDMA_DP_PORT_OFFSET), or the engine's
 * ferry_params.rdma_port when set. docs/data-path.md.
 *
 * The engine picks these ops for rdma: URIs; an embedder never calls them
 * directly.
 */
#ifndef FERRY_RDMA_DATAPATH_H
#define FERRY_RDMA_DATAPATH_H

#include <ferry/datapath.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The data path's name on the wire. */
#define FERRY_RDMA_DP_NAME "rdma"

/* The rdma_cm port is the URI's port plus this. */
#define FERRY_RDMA_DP_PORT_OFFSET 1

/* The sending side; see struct ferry_dp_source_ops for every member's thread. */
extern const struct ferry_dp_source_ops ferry_rdma_dp_source_ops;

/* The receiving side; see struct ferry_dp_dest_ops (it has listen()). */
extern const struct ferry_dp_dest_ops ferry_rdma_dp_dest_ops;

/*
 * ferry_rdma_dp_fallback_error() - whether a connect() error of the source
 * means "RDMA cannot be used to reach that peer" (no device, no route,
 * refused, timed out, memlock too small, ...), so that another data path may
 * be tried, rather than a cancel or a broken peer.
 */
int ferry_rdma_dp_fallback_error(int err);

#ifdef __cplusplus
}
#endif
#endif
