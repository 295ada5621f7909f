/**
 * In-page recorders (installed with `page.evaluate`), so that short-lived
 * states are seen even between two polls of the test: a MutationObserver
 * notes every status a queue row shows and every text a streaming agent
 * message shows, as they are rendered.
 */

/** Start recording on `page`. Read with `readRecorder(page)`. */
export async function installRecorder(page) {
  await page.evaluate(() => {
    const rec = { statuses: {}, streaming: [] };
    window.__e2e = rec;
    /** Every text of a transcript document this page has (to tell text that
     * arrived as ephemeral deltas from text already in a document). */
    const transcriptText = () => {
      const handles = window.canopy ? Object.values(window.canopy.repo.handles) : [];
      let all = "";
      for (const h of handles) {
        try {
          if (!h.isReady()) continue;
          const d = h.doc();
          if (d && Array.isArray(d.messages)) all += JSON.stringify(d.messages);
        } catch {
          // not loaded
        }
      }
      return all;
    };
    const look = () => {
      for (const row of document.querySelectorAll(".queue-row")) {
        const text = row.querySelector(".queue-text")?.textContent?.trim() ?? "";
        const status = row.querySelector(".chip")?.textContent?.trim() ?? "";
        const seen = (rec.statuses[text] ??= []);
        if (status && seen[seen.length - 1] !== status) seen.push(status);
      }
      for (const msg of document.querySelectorAll(".msg-agent.is-streaming .part-text")) {
        const text = msg.textContent ?? "";
        const last = rec.streaming[rec.streaming.length - 1];
        if (text && (!last || last.text !== text)) {
          rec.streaming.push({ text, at: performance.now(), inDocument: transcriptText().includes(JSON.stringify(text).slice(1, -1)) });
        }
      }
    };
    new MutationObserver(look).observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true, attributeFilter: ["class"] });
    look();
  });
}

/** `{ statuses: { [queue text]: string[] }, streaming: { text, at, inDocument }[] }` */
export async function readRecorder(page) {
  return page.evaluate(() => window.__e2e);
}
