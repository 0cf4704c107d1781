import type { Api } from "../api.js";
import { disablePush, enablePush, initialPushState, pushFailure, pushSupport, refreshPush, type PushState } from "../push.js";
import type { Shell } from "../views/shell.js";

/** The bell's title in each state: what a click does. */
const PUSH_TITLES: Record<PushState, string> = {
  unsupported: "This browser cannot show notifications from this site",
  off: "Notifications are off on this device: click to turn them on",
  on: "Notifications are on for this device: click to turn them off",
  blocked: "Notifications are blocked for this site in the browser's settings",
  error: "Notifications could not be turned on: click to try again",
};

export interface PushToggleHost {
  readonly api: Api;
  readonly ui: Shell;
  toast(text: string): void;
}

/** The bell: this device's browser notifications, on or off. */
export class PushToggle {
  /** A bell click or the start-up refresh is under way. */
  private busy = false;

  constructor(private readonly host: PushToggleHost) {}

  /** What the bell shows before anything is asked: what the browser's own state says. */
  showInitial(): void {
    const support = pushSupport();
    this.render(initialPushState(), support.supported ? undefined : support.reason);
  }

  /** At start: notifications turned on before are registered again, for this sign-in's device. */
  async start(): Promise<void> {
    if (!pushSupport().supported) return;
    this.busy = true;
    this.host.ui.push.disabled = true;
    try {
      this.render(await refreshPush(this.host.api));
    } catch (err) {
      // No toast: nothing was asked for; the bell's state and title tell.
      const failure = pushFailure(err);
      this.render(failure.state, failure.message);
    } finally {
      this.busy = false;
      this.host.ui.push.disabled = false;
    }
  }

  /** The bell: turns this device's notifications on (prompting, so only from a click) or off. */
  async toggle(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    const bell = this.host.ui.push;
    bell.disabled = true;
    try {
      this.render(bell.dataset.state === "on" ? await disablePush(this.host.api) : await enablePush(this.host.api));
    } catch (err) {
      const failure = pushFailure(err);
      this.render(failure.state, failure.message);
      this.host.toast(failure.message);
    } finally {
      this.busy = false;
      bell.disabled = false;
    }
  }

  /** The bell: its state, what a click does, and the reason when it failed. */
  private render(state: PushState, problem?: string): void {
    const bell = this.host.ui.push;
    bell.dataset.state = state;
    bell.textContent = state === "on" ? "🔔" : "🔕";
    bell.setAttribute("aria-pressed", String(state === "on"));
    const title = problem && state !== "off" ? (state === "error" ? `${problem} Click to try again.` : problem) : PUSH_TITLES[state];
    bell.title = title;
    bell.setAttribute("aria-label", title);
  }
}
