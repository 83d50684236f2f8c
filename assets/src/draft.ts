// Text another page hands to the chat ("Send to chat" on a transcript): kept in memory
// until the new-conversation view puts it in its message box, once.

let draft: string | null = null;

export function setChatDraft(text: string): void {
  draft = text;
}

/** The waiting draft, which is then gone. */
export function takeChatDraft(): string | null {
  const text = draft;
  draft = null;
  return text;
}
