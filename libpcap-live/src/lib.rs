//! Live capture sources (AF_PACKET, NFQUEUE): not built yet.
