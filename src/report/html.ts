/**
 * The report page's frame: escaping, a sortable table, and the small inline style and
 * script every page carries (no file or network is fetched when the page is viewed).
 */
export const esc = (s: string): string => s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!)

/** Figures are right-aligned, words left-aligned. */
const numeric = (cell: string): boolean => /^-?[\d.,]+( ?[kMGBsmh%]|\b)/.test(cell)

/** A table whose column headers sort it (click again to reverse); `attrs` per row, e.g. a filter key. */
export const sortableTable = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>, o: { id: string; rowAttrs?: (i: number) => string; cellClass?: (col: number, value: string) => string } = { id: "" }): string =>
  `<table class="sortable" id="${esc(o.id)}"><thead><tr>${header.map((h) => `<th tabindex="0">${esc(h)}</th>`).join("")}</tr></thead><tbody>` +
  rows.map((r, i) => `<tr ${o.rowAttrs?.(i) ?? ""}>${r.map((c, j) => `<td class="${[numeric(c) ? "num" : "", o.cellClass?.(j, c) ?? ""].join(" ").trim()}">${esc(c)}</td>`).join("")}</tr>`).join("") +
  `</tbody></table>`

const style = `
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1320px; padding: 0 16px; color: #222; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #ddd; } h3 { font-size: 15px; }
table { border-collapse: collapse; margin: 8px 0; } th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; }
td.num { text-align: right; white-space: nowrap; } td.wrap { font-size: 12px; word-break: break-all; }
th { background: #f4f4f4; cursor: pointer; user-select: none; } th[aria-sort=ascending]::after { content: " ▲"; } th[aria-sort=descending]::after { content: " ▼"; }
td.mark { color: #b00; }
pre { background: #f7f7f7; padding: 8px; overflow-x: auto; font-size: 12px; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; } figure { margin: 0; } figure.chart { width: min-content; } figcaption { font-size: 12px; color: #555; }
.controls { margin: 8px 0; display: flex; gap: 24px; align-items: center; }
.variant { display: grid; grid-template-columns: minmax(0, 1fr) auto; gap: 16px; }
.pattern img { width: 192px; height: 192px; image-rendering: pixelated; border: 1px solid #ccc; }
blockquote { margin: 8px 0; padding: 4px 12px; border-left: 3px solid #ccc; white-space: pre-wrap; }
#tooltip { position: fixed; pointer-events: none; background: #fff; border: 1px solid #999; padding: 3px 6px; font-size: 12px; display: none; max-width: 420px; box-shadow: 0 1px 3px #0003; }
.note { color: #666; font-size: 12px; }
`

const script = `
(() => {
  const state = JSON.parse(sessionStorage.getItem("report-state") || "{}");
  const save = () => sessionStorage.setItem("report-state", JSON.stringify(state));
  // Charts: show the rendering that matches the controls.
  const apply = () => {
    for (const fig of document.querySelectorAll("figure.chart")) {
      const views = [...fig.querySelectorAll(".view")];
      const pick = views.find((v) => (v.dataset.smoothing === undefined || v.dataset.smoothing === state.smoothing) && v.dataset.x === state.x) || views[0];
      for (const v of views) v.hidden = v !== pick;
    }
  };
  for (const c of document.querySelectorAll("[data-control]")) {
    const key = c.dataset.control;
    if (state[key] === undefined) state[key] = c.value;
    c.value = state[key];
    c.addEventListener("change", () => { state[key] = c.value; save(); apply(); });
  }
  apply();
  // Tables: click a header to sort by that column, again to reverse.
  // A cell's figure: "4.31 ± 0.02", "1.37M / 793k", "7.11 MiB", "3m05s", "1.5 min"; NaN for words and dates.
  const units = { k: 1e3, M: 1e6, G: 1e9, B: 1, KiB: 1024, MiB: 1048576, GiB: 1073741824, s: 1, min: 60, h: 3600 };
  const num = (text) => {
    const s = text.trim();
    const d = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(s);
    if (d && s !== "") return (Number(d[1] || 0) * 60 + Number(d[2] || 0)) * 60 + Number(d[3] || 0);
    const m = /^(-?[0-9.]+(?:e-?[0-9]+)?) ?([A-Za-z]+)?(?: ?[±/].*)?$/.exec(s);
    return m && (m[2] === undefined || m[2] in units) ? Number(m[1]) * (m[2] ? units[m[2]] : 1) : NaN;
  };
  for (const table of document.querySelectorAll("table.sortable")) {
    const heads = [...table.tHead.rows[0].cells];
    heads.forEach((th, col) => {
      const sort = () => {
        const dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
        heads.forEach((h) => h.removeAttribute("aria-sort"));
        th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
        const rows = [...table.tBodies[0].rows];
        const text = (r) => r.cells[col].textContent;
        const numeric = rows.every((r) => text(r) === "" || text(r) === "n/a" || !Number.isNaN(num(text(r))));
        rows.sort((a, b) => {
          if (!numeric) return dir * text(a).localeCompare(text(b));
          const x = num(text(a)), y = num(text(b));
          return dir * ((Number.isNaN(x) ? Infinity : x) - (Number.isNaN(y) ? Infinity : y));
        });
        for (const r of rows) table.tBodies[0].appendChild(r);
      };
      th.addEventListener("click", sort);
      th.addEventListener("keydown", (e) => { if (e.key === "Enter") sort(); });
    });
  }
  // The ledger: keep one experiment's runs.
  const filter = document.getElementById("experiment-filter");
  if (filter) {
    const show = () => { for (const r of document.querySelectorAll("#ledger tbody tr")) r.hidden = filter.value !== "" && r.dataset.experiment !== filter.value; };
    filter.addEventListener("change", show);
    show();
  }
  // Tooltips: a point's label, next to the pointer.
  const tip = document.getElementById("tooltip");
  document.addEventListener("mouseover", (e) => {
    const t = e.target.closest && e.target.closest("figure.chart [aria-roledescription='point']");
    if (!t) { tip.style.display = "none"; return; }
    tip.textContent = t.getAttribute("aria-label");
    tip.style.display = "block";
  });
  document.addEventListener("mousemove", (e) => { tip.style.left = (e.clientX + 12) + "px"; tip.style.top = (e.clientY + 12) + "px"; });
  // A page that reloads itself (--watch) keeps its place.
  const y = sessionStorage.getItem("report-scroll:" + location.pathname);
  if (y !== null) window.scrollTo(0, Number(y));
  addEventListener("beforeunload", () => sessionStorage.setItem("report-scroll:" + location.pathname, String(scrollY)));
})();
`

export const page = (o: { title: string; body: string; reloadSeconds?: number }): string =>
  `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(o.title)}</title>
${o.reloadSeconds === undefined ? "" : `<meta http-equiv="refresh" content="${o.reloadSeconds}">`}
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>${style}</style></head>
<body>
${o.body}
<div id="tooltip" role="tooltip"></div>
<script>${script}</script>
</body></html>
`
