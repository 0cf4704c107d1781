import { status, type ClientDuplexStream, type StatusObject } from "@grpc/grpc-js";
import type { Logger } from "pino";
import type {
  ChatServerServiceClient,
  DeliverStreamRequest,
  DeliverStreamResponse,
  EncodedUserDelivery,
} from "../../gen/ts-proto/chat/internal/v1/chat_server.js";
import { DELIVER_STREAM_BATCHES_IN_FLIGHT } from "./message-limits.js";

/**
 * How a batch on the stream ended: the sessions it was queued on and the
 * users none of whose sessions took it, or why it was not answered ("busy":
 * it found the queue towards its chat server full, and was not sent).
 */
export type BatchOutcome = { sessions: number; missed: readonly bigint[] } | { failed: "unimplemented" | "broken" | "timeout" | "busy" };

type Pending = { resolve: (outcome: BatchOutcome) => void; timer: NodeJS.Timeout };
type Queued = { deliveries: EncodedUserDelivery[]; resolve: (outcome: BatchOutcome) => void };

/** How long a chat server that answered DeliverStream with UNIMPLEMENTED is sent Deliver calls before the stream is tried again. */
export const STREAM_RETRY_MS = 30_000;

/** Batches that may wait here for a place on the stream, beyond those on it: four times as many. */
export const DELIVER_STREAM_QUEUED_MAX = 4 * DELIVER_STREAM_BATCHES_IN_FLIGHT;

/**
 * The pushing side of one chat server's DeliverStream: a batch is one
 * message on a stream kept open, answered by batch id. The stream opens at
 * the first batch and again at the first one after it broke; a batch never
 * throws, it resolves with how it ended.
 *
 * At most as many batches are on the stream unanswered as the chat server
 * handles at once (DELIVER_STREAM_BATCHES_IN_FLIGHT); the others wait here,
 * in order, up to DELIVER_STREAM_QUEUED_MAX of them (one more ends as busy).
 * Written all at once, they waited in grpc-js's buffer and the server's
 * flow control behind slow ones (a dependency of the server answering
 * slowly), their time running: past the timeout every batch of the stream
 * ended as broken, and their users, online, were notified. A batch's `timeoutMs` runs from when
 * it goes on the stream, which the server then reads at once: it times the
 * server's answer, not a wait here.
 *
 * A batch unanswered in time takes the stream down with it (a server that
 * answers nothing within that has a dead connection or a stuck loop), and
 * the batches on it or waiting for it end as broken: delivery is best
 * effort, devices catch up from their cursors, and their users count as
 * unreached (so they are notified).
 */
export class DeliveryStream {
  private call?: ClientDuplexStream<DeliverStreamRequest, DeliverStreamResponse>;
  /** Batches on the stream, not yet answered. */
  private readonly pending = new Map<bigint, Pending>();
  /** Batches waiting for a place on the stream. */
  private readonly queue: Queued[] = [];
  private nextBatchId = 1n;
  private closed = false;
  private unsupportedUntil = -Infinity;

  constructor(
    private readonly client: ChatServerServiceClient,
    private readonly timeoutMs: number,
    private readonly logger?: Logger,
    private readonly retryStreamMs = STREAM_RETRY_MS,
    private readonly maxQueued = DELIVER_STREAM_QUEUED_MAX,
  ) {}

  /**
   * The chat server did not know DeliverStream (an older build) less than
   * `retryStreamMs` ago: the caller uses Deliver. Asked again after that, as
   * a newer build may have taken the address (the same server id back at the
   * same address is not always seen to leave the registry in between).
   */
  get unsupported(): boolean {
    return performance.now() < this.unsupportedUntil;
  }

  send(deliveries: EncodedUserDelivery[]): Promise<BatchOutcome> {
    if (this.unsupported) return Promise.resolve({ failed: "unimplemented" });
    if (this.closed) return Promise.resolve({ failed: "broken" });
    if (this.queue.length >= this.maxQueued) return Promise.resolve({ failed: "busy" });
    return new Promise<BatchOutcome>((resolve) => {
      this.queue.push({ deliveries, resolve });
      this.pump();
    });
  }

  /** Writes waiting batches while the stream has room for them. */
  private pump(): void {
    while (this.queue.length > 0 && this.pending.size < DELIVER_STREAM_BATCHES_IN_FLIGHT) {
      const call = this.call ?? this.open();
      if (!call) {
        for (const q of this.queue.splice(0)) q.resolve({ failed: "broken" });
        return;
      }
      // Its 'drain' pumps again.
      if (call.writableNeedDrain) return;
      const { deliveries, resolve } = this.queue.shift()!;
      const batchId = this.nextBatchId++;
      this.pending.set(batchId, { resolve, timer: this.expire(batchId, call) });
      call.write({ batchId, deliveries });
    }
  }

  /** Ends the batch as unanswered, and the stream with it, unless answered within the timeout. */
  private expire(batchId: bigint, call: ClientDuplexStream<DeliverStreamRequest, DeliverStreamResponse>): NodeJS.Timeout {
    return setTimeout(() => {
      // Timers run before the loop reads its sockets: after the loop was held up
      // past the timeout (a long GC, a starved or paused VM), the answer may be
      // waiting unread. Read first, then judge, rather than throw it away with
      // every other batch on the stream.
      setImmediate(() => {
        if (!this.pending.has(batchId)) return;
        this.logger?.warn({ batchId: String(batchId), timeoutMs: this.timeoutMs }, "delivery batch unanswered; reopening the stream");
        this.settle(batchId, { failed: "timeout" });
        this.reset(call);
      });
    }, this.timeoutMs);
  }

  /** Ends the stream for good; batches still waiting end as broken, and later ones at once. */
  close(): void {
    this.closed = true;
    if (this.call) this.reset(this.call);
  }

  /** Batches not yet answered: on the stream, or waiting for a place on it. */
  get waiting(): number {
    return this.pending.size + this.queue.length;
  }

  private open(): ClientDuplexStream<DeliverStreamRequest, DeliverStreamResponse> | undefined {
    let call: ClientDuplexStream<DeliverStreamRequest, DeliverStreamResponse>;
    try {
      call = this.client.deliverStream();
    } catch (err) {
      // The channel was closed under a caller that still held this stream (its server just left the registry).
      this.logger?.warn({ err }, "cannot open a delivery stream");
      return undefined;
    }
    call.on("data", (res: DeliverStreamResponse) => {
      this.settle(res.batchId, { sessions: res.sessions, missed: res.missedUserIds });
      this.pump();
    });
    call.on("drain", () => {
      if (this.call === call) this.pump();
    });
    // Every end of a call comes as 'status' (an error also as 'error', which needs a listener).
    call.on("error", () => undefined);
    call.on("status", (s: StatusObject) => {
      if (s.code === status.UNIMPLEMENTED) this.unsupportedUntil = performance.now() + this.retryStreamMs;
      else if (s.code !== status.OK && s.code !== status.CANCELLED) this.logger?.warn({ code: s.code, details: s.details }, "delivery stream ended");
      this.forget(call, s.code === status.UNIMPLEMENTED ? "unimplemented" : "broken");
    });
    return (this.call = call);
  }

  private settle(batchId: bigint, outcome: BatchOutcome): void {
    const p = this.pending.get(batchId);
    if (!p) return;
    this.pending.delete(batchId);
    clearTimeout(p.timer);
    p.resolve(outcome);
  }

  private reset(call: ClientDuplexStream<DeliverStreamRequest, DeliverStreamResponse>): void {
    this.forget(call, "broken");
    call.cancel();
  }

  /**
   * The call is over: its batches end, and so do those waiting for it (a
   * server that broke the stream or left one unanswered would mostly fail
   * them after another timeout). The next batch opens another.
   */
  private forget(call: ClientDuplexStream<DeliverStreamRequest, DeliverStreamResponse>, why: "unimplemented" | "broken"): void {
    if (this.call !== call) return;
    this.call = undefined;
    for (const q of this.queue.splice(0)) q.resolve({ failed: why });
    for (const id of [...this.pending.keys()]) this.settle(id, { failed: why });
  }
}
