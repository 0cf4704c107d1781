import type { SessionSpec } from "./session.js";

/** Orchestrator -> load generator. Every command carries an id its reply echoes. */
export type WorkerCommand =
  | {
      type: "init";
      id: number;
      workerId: number;
      wsUrls: string[];
      localAddresses: string[];
      sessions: SessionSpec[];
      ackDelayMs: number;
      connectTimeoutMs: number;
    }
  | { type: "connect"; id: number; concurrency: number; limit?: number }
  | { type: "status"; id: number }
  | {
      type: "phase-start";
      id: number;
      tag: string;
      /** This worker's share of the offered rate, messages per second. */
      rate: number;
      durationMs: number;
      ackTimeoutMs: number;
      textBytes: number;
      /** Sending sessions of this worker and the channel each sends to (decimal string). */
      senders: { g: number; channelId: string }[];
    }
  | { type: "phase-report"; id: number }
  | { type: "storm"; id: number; concurrency: number; syncTimeoutMs: number; persistent: boolean }
  | { type: "close"; id: number };

export interface ConnectReport {
  connected: number;
  failed: number;
  errors: [string, number][];
  durationMs: number;
  handshakeMs: Float64Array;
}

export interface PhaseReport {
  sent: number;
  acked: number;
  ackedKeys: number[];
  deliveries: number;
  dupMessages: number;
  firstDeliveryAt: number;
  lastDeliveryAt: number;
  deliveryLatency: Float64Array;
  ackLatency: Float64Array;
  /** Per receiving session (global index): the keys it received in this phase. */
  received: [number, number[]][];
  sendErrors: [string, number][];
  closeCodes: [number, number][];
  unexpectedCloses: number;
}

export interface StormReport {
  sessions: number;
  failed: number;
  notSynced: number;
  welcomeMs: Float64Array;
  syncedMs: Float64Array;
}

export type WorkerReply =
  | { type: "ok"; id: number }
  | { type: "error"; id: number; message: string }
  | { type: "connected"; id: number; report: ConnectReport }
  | {
      type: "status";
      id: number;
      open: number;
      deliveries: number;
      lastDeliveryAt: number;
      closeCodes: [number, number][];
      unexpectedCloses: number;
    }
  | { type: "phase-sent"; id: number; sent: number; acked: number; unacked: number }
  | { type: "phase-report"; id: number; report: PhaseReport }
  | { type: "storm"; id: number; report: StormReport };
