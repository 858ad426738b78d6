// Encodes each log entry's command once. A leader sends the same entries to every follower and
// writes them to its own disk: JSON.stringify of each command for every one of those was the
// same work two or three times over (issue 7). The text of a command is cached by the command
// object, which the log keeps unchanged from proposal to compaction, so a WeakMap lets it go
// with the entry.
import type { Command } from '../locks/commands';
import type { Entry } from '../raft/messages';
import type { PeerMessage } from '../replica/peer-messages';

const commandTexts = new WeakMap<Command, string>();

/** The JSON text of an entry's command ('null' for a leader's no-op). */
export function commandText(entry: Entry<Command>): string {
  const command = entry.data;
  if (command === null) return 'null';
  let text = commandTexts.get(command);
  if (text === undefined) {
    text = JSON.stringify(command);
    commandTexts.set(command, text);
  }
  return text;
}

/** One peer message as a line of JSON; an append reuses each entry's cached command text. */
export function encodePeerMessage(message: PeerMessage): string {
  if (message.type !== 'append' || message.entries.length === 0) return JSON.stringify(message);
  let entries = '';
  for (const entry of message.entries) {
    if (entries.length > 0) entries += ',';
    entries += `{"index":${entry.index},"term":${entry.term},"data":${commandText(entry)}}`;
  }
  return `{"type":"append","term":${message.term},"from":${JSON.stringify(message.from)},"to":${JSON.stringify(message.to)},`
    + `"prevIndex":${message.prevIndex},"prevTerm":${message.prevTerm},"entries":[${entries}],`
    + `"commit":${message.commit},"read":${message.read}}`;
}
