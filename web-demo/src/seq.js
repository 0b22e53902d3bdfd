// Checks what the page received against the server's per-topic sequence
// numbers: after any outage with history kept, the events must still be
// contiguous, none missed and none twice. A resync starts a new count.

export class SeqTracker {
  constructor() {
    this.reset();
  }

  reset() {
    this.first = undefined;
    this.last = undefined;
    this.count = 0;
    this.missing = [];
    this.duplicates = [];
  }

  record(seq) {
    if (typeof seq !== 'number') return;
    this.count += 1;
    if (this.last === undefined) {
      this.first = seq;
    } else if (seq <= this.last) {
      this.duplicates.push(seq);
      return;
    } else {
      for (let missing = this.last + 1; missing < seq; missing++) this.missing.push(missing);
    }
    this.last = seq;
  }

  /** `{ok, count, text}` for the page. */
  summary() {
    const ok = this.missing.length === 0 && this.duplicates.length === 0;
    if (this.count === 0) return { ok, count: 0, text: 'no events yet' };
    const range = `seq ${this.first}–${this.last}: ${this.count} event${this.count === 1 ? '' : 's'}`;
    const problems = [
      this.missing.length ? `missed ${this.missing.join(', ')}` : '',
      this.duplicates.length ? `twice ${this.duplicates.join(', ')}` : '',
    ].filter(Boolean);
    return { ok, count: this.count, text: ok ? `${range}, none missed, none twice` : `${range}; ${problems.join('; ')}` };
  }
}
