/**
 * Size limits of the internal gRPC channels (gateway to chat server, and
 * pipeline or api to chat server). grpc-js refuses a message over 4 MiB by
 * default, and on the gateway's stream one refused message fails the whole
 * stream, moving every session on it. What crosses here is bounded upstream
 * (a client frame by CHAT_MAX_FRAME_BYTES, at most 16 MiB; a sync page by
 * its text budget; a delivery batch by DELIVER_CHUNK_BYTES), so this limit is
 * only a wide backstop above those bounds.
 */
export const INTERNAL_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

export const INTERNAL_MESSAGE_LIMITS = {
  "grpc.max_receive_message_length": INTERNAL_MAX_MESSAGE_BYTES,
  "grpc.max_send_message_length": INTERNAL_MAX_MESSAGE_BYTES,
} as const;

/**
 * A delivery batch carries about this many bytes of frames at most; more go
 * out as further batches. A group message of 100,000 characters to 100
 * members on one server is up to ~40 MB of copies.
 */
export const DELIVER_CHUNK_BYTES = 2 * 1024 * 1024;

/**
 * Batches of one DeliverStream a chat server handles at once; while this
 * many are, it reads no more of the stream and gRPC's flow control holds the
 * sender back. The sender puts no more than this on the stream unanswered,
 * so a batch it wrote is read at once and its timeout times the answer.
 */
export const DELIVER_STREAM_BATCHES_IN_FLIGHT = 16;
