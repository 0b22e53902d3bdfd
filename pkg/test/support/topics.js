import { randomUUID } from 'node:crypto';

/** An identifier no other test uses. */
export const uniqueId = () => randomUUID().slice(0, 8);

/** A topic no other test uses: `type:` and a unique identifier. */
export const uniqueTopic = (type) => `${type}:${uniqueId()}`;
