/* dynsr compare: one page of the report (no libraries, no network).
 *
 * The page's data is the JSON in #report-data (dynsr/report/data.py): the results of
 * every model and the references on one input image. Coordinates are SR pixels.
 *
 *  - before/after: two results, the left one clipped to the divider (range input);
 *    keys: arrows move the divider (Shift: faster), 1-9 pick the right image, Shift+1-9
 *    the left one, + and - zoom; clicking the view picks the zoom point.
 *  - zoom: every result's full-resolution image cut to the same rectangle, enlarged by an
 *    integer factor with image-rendering: pixelated, so each pixel is a sharp square.
 *  - kernels: UDVD's per-pixel kernels at the grid point nearest to the zoom point.
 */
(function () {
  "use strict";

  const data = JSON.parse(document.getElementById("report-data").textContent);
  const page = data.page;
  const results = page.results;
  const W = page.sr_size[0];
  const H = page.sr_size[1];
  const CROP = 176; // CSS pixels of a zoom window's side (six fit side by side)
  const ZOOMS = [1, 2, 3, 4, 6, 8, 12, 16];

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else if (key === "style") Object.assign(node.style, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children || []) {
      if (child !== null && child !== undefined) {
        node.append(child instanceof Node ? child : document.createTextNode(String(child)));
      }
    }
    return node;
  }

  const fmt = (value, digits) =>
    value === null || value === undefined ? "—" : value.toFixed(digits);
  const clamp = (v, lo, hi) => Math.min(Math.max(v, lo), hi);

  // ---------------------------------------------------------------------------------------
  // state

  const byKey = Object.fromEntries(results.map((r, i) => [r.key, i]));
  const models = results.map((r, i) => [r, i]).filter(([r]) => r.kind === "model");
  const baseline = byKey.bicubic !== undefined ? byKey.bicubic : 0;
  const lastModel = models.length ? models[models.length - 1][1] : results.length - 1;
  const state = {
    left: lastModel === baseline ? 0 : baseline,
    right: lastModel,
    divider: 500, // of 1000
    zoom: 4,
    cx: Math.floor(W / 2),
    cy: Math.floor(H / 2),
    side: null, // SR pixels per window side; null: as many as CROP holds at this zoom
  };
  if (data.crop) {
    const [x, y, side] = data.crop;
    state.cx = clamp(x + Math.floor(side / 2), 0, W - 1);
    state.cy = clamp(y + Math.floor(side / 2), 0, H - 1);
    // The given square exactly, as large as the crop figure (dynsr/report/figure.py) shows it.
    state.side = side;
    state.zoom = ZOOMS.filter((z) => z * side <= 256).pop() || 1;
  } else {
    // About a third of the shorter side in a window, but at least 3× so that pixels show.
    const want = CROP / Math.max(8, Math.min(W, H) / 3);
    state.zoom = Math.max(3, ZOOMS.filter((z) => z <= want).pop() || 1);
  }

  // ---------------------------------------------------------------------------------------
  // header: navigation, subtitle, notes

  const nav = document.getElementById("nav");
  if (data.nav.index) nav.append(el("a", { href: data.nav.index, text: "↑ all images" }));
  if (data.nav.prev) nav.append(el("a", { href: data.nav.prev, rel: "prev", text: "‹ previous" }));
  if (data.nav.next) nav.append(el("a", { href: data.nav.next, rel: "next", text: "next ›" }));
  if (data.nav.position[1] > 1) {
    nav.append(el("span", { text: `image ${data.nav.position[0]} of ${data.nav.position[1]}` }));
  }
  document.getElementById("subtitle").textContent =
    `x${page.scale} · LR ${page.lr_size[0]}×${page.lr_size[1]} → ` +
    `${W}×${H} · ${page.source}` + (page.hr_source ? ` · HR ${page.hr_source}` : "");

  const main = document.getElementById("report");
  for (const note of page.notes) main.append(el("p", { class: "note", text: note }));

  // ---------------------------------------------------------------------------------------
  // before / after

  const options = results.map((r, i) => el("option", { value: String(i), text: r.label }));
  const leftSelect = el("select", { id: "left", "aria-label": "left image" },
    options.map((o) => o.cloneNode(true)));
  const rightSelect = el("select", { id: "right", "aria-label": "right image" },
    options.map((o) => o.cloneNode(true)));
  const slider = el("input", {
    id: "divider", type: "range", min: "0", max: "1000", step: "1",
    value: String(state.divider), "aria-label": "divider between the left and right image",
  });
  const baseImg = el("img", { class: "base", alt: "", draggable: "false" });
  const overImg = el("img", { alt: "", draggable: "false" });
  const overlay = el("div", { class: "overlay", id: "overlay" }, [overImg]);
  const line = el("div", { class: "divider-line" });
  const zoomBox = el("div", { class: "zoom-box" });
  const tagLeft = el("span", { class: "tag tag-left" });
  const tagRight = el("span", { class: "tag tag-right" });
  const view = el("div", { class: "view", id: "view", title: "click: zoom here" },
    [baseImg, overlay, line, zoomBox, tagLeft, tagRight]);

  main.append(el("section", { class: "compare", "aria-label": "before and after" }, [
    el("div", { class: "controls" }, [
      el("label", {}, ["left ", leftSelect]),
      slider,
      el("label", {}, [rightSelect, " right"]),
    ]),
    view,
    el("p", { class: "hint", text: "← → move the divider (Shift: faster) · 1–9: right " +
      "image, Shift+1–9: left image · + − zoom · click the picture to zoom there" }),
  ]));

  let viewScale = 1; // CSS pixels per SR pixel in the view

  function layoutView() {
    // The view's own size: the SR previews' (the LR's preview is smaller by the scale).
    const nativeW = (results.find((r) => r.pixel === 1) || results[0]).preview.width;
    const avail = Math.max(240, Math.min(document.documentElement.clientWidth - 48, 1200));
    // Small images are enlarged by an integer factor (pixel for pixel), large ones fit.
    let shown = nativeW;
    if (nativeW * 2 <= Math.min(avail, 720)) shown = nativeW * Math.floor(Math.min(avail, 720) / nativeW);
    else if (nativeW > avail) shown = avail;
    viewScale = shown / W;
    const width = Math.round(W * viewScale);
    const height = Math.round(H * viewScale);
    view.style.width = `${width}px`;
    view.style.height = `${height}px`;
    for (const [img, r] of [[baseImg, results[state.right]], [overImg, results[state.left]]]) {
      img.style.width = `${width}px`;
      img.style.height = `${height}px`;
      // Enlarged pictures show their pixels as squares; shrunk ones are filtered.
      img.classList.toggle("pixelated", width >= r.preview.width * 1.01);
    }
  }

  function showPair() {
    const left = results[state.left];
    const right = results[state.right];
    leftSelect.value = String(state.left);
    rightSelect.value = String(state.right);
    if (baseImg.getAttribute("src") !== right.preview.path) baseImg.src = right.preview.path;
    if (overImg.getAttribute("src") !== left.preview.path) overImg.src = left.preview.path;
    baseImg.alt = right.label;
    overImg.alt = left.label;
    tagLeft.textContent = left.label;
    tagRight.textContent = right.label;
    layoutView();
    showDivider();
    for (const row of document.querySelectorAll("tr[data-index]")) {
      const i = Number(row.dataset.index);
      row.classList.toggle("is-left", i === state.left);
      row.classList.toggle("is-right", i === state.right);
    }
  }

  function showDivider() {
    const percent = state.divider / 10;
    overlay.style.width = `${percent}%`;
    line.style.left = `${percent}%`;
    slider.value = String(state.divider);
  }

  slider.addEventListener("input", () => {
    state.divider = Number(slider.value);
    showDivider();
  });
  leftSelect.addEventListener("change", () => { state.left = Number(leftSelect.value); showPair(); });
  rightSelect.addEventListener("change", () => { state.right = Number(rightSelect.value); showPair(); });
  view.addEventListener("click", (event) => {
    const box = view.getBoundingClientRect();
    setCentre((event.clientX - box.left) / viewScale, (event.clientY - box.top) / viewScale);
  });
  window.addEventListener("resize", () => { layoutView(); showZoom(); });

  document.addEventListener("keydown", (event) => {
    const target = event.target;
    if (target instanceof HTMLSelectElement || (target instanceof HTMLInputElement &&
        target !== slider) || event.ctrlKey || event.metaKey || event.altKey) return;
    if ((event.key === "ArrowLeft" || event.key === "ArrowRight") && target !== slider) {
      const step = event.shiftKey ? 100 : 20;
      state.divider = clamp(state.divider + (event.key === "ArrowLeft" ? -step : step), 0, 1000);
      showDivider();
      event.preventDefault();
    } else if (/^Digit[1-9]$/.test(event.code)) {
      const i = Number(event.code.slice(5)) - 1;
      if (i < results.length) {
        if (event.shiftKey) state.left = i; else state.right = i;
        showPair();
        event.preventDefault();
      }
    } else if (event.key === "+" || event.key === "=" || event.key === "-") {
      const at = ZOOMS.indexOf(state.zoom) + (event.key === "-" ? -1 : 1);
      if (at >= 0 && at < ZOOMS.length) {
        state.zoom = ZOOMS[at];
        state.side = null;
        zoomSelect.value = String(state.zoom);
        showZoom();
      }
      event.preventDefault();
    }
  });

  // ---------------------------------------------------------------------------------------
  // synchronized zoom

  const zoomSelect = el("select", { id: "zoom", "aria-label": "zoom factor" },
    ZOOMS.map((z) => el("option", { value: String(z), text: `${z}×` })));
  const where = el("span", { class: "where", id: "zoom-where" });
  const crops = results.map((r, i) => {
    const img = el("img", { src: r.full.path, alt: r.label, class: "pixelated",
      draggable: "false", decoding: "async" });
    const marker = el("div", { class: "marker", hidden: true });
    const win = el("div", { class: "window" }, [img, marker]);
    const scores = r.psnr_y !== null && r.psnr_y !== undefined
      ? `${fmt(r.psnr_y, 2)} dB · ${fmt(r.ssim_y, 4)}` : (r.kind === "model" ? "" : r.note);
    const figure = el("figure", { class: "crop", "data-key": r.key, "data-index": String(i) }, [
      win,
      el("figcaption", {}, [
        el("b", { text: r.label }),
        el("span", { text: [scores, r.seconds !== null && r.seconds !== undefined
          ? `${fmt(r.seconds, 2)} s` : ""].filter(Boolean).join(" · ") }),
      ]),
    ]);
    win.addEventListener("click", (event) => {
      const box = win.getBoundingClientRect();
      setCentre(state.x0 + (event.clientX - box.left) / state.zoom,
        state.y0 + (event.clientY - box.top) / state.zoom);
    });
    return { figure, win, img, marker, result: r };
  });
  main.append(el("section", { class: "zoom", "aria-label": "zoomed crops" }, [
    el("div", { class: "controls" }, [el("label", {}, ["zoom ", zoomSelect]), where,
      el("span", { class: "hint", text: "click the picture above or a crop to move all crops" })]),
    el("div", { class: "crops", id: "crops" }, crops.map((c) => c.figure)),
  ]));
  zoomSelect.value = String(state.zoom);
  zoomSelect.addEventListener("change", () => {
    state.zoom = Number(zoomSelect.value);
    state.side = null;
    showZoom();
  });

  function setCentre(x, y) {
    state.cx = clamp(Math.floor(x), 0, W - 1);
    state.cy = clamp(Math.floor(y), 0, H - 1);
    showZoom();
  }

  function showZoom() {
    const z = state.zoom;
    const side = state.side || Math.max(1, Math.floor(CROP / z));
    const sideW = Math.min(W, side);
    const sideH = Math.min(H, side);
    // Integer source rectangle inside the image: every crop shows exactly these pixels.
    const x0 = clamp(state.cx - Math.floor(sideW / 2), 0, W - sideW);
    const y0 = clamp(state.cy - Math.floor(sideH / 2), 0, H - sideH);
    Object.assign(state, { x0, y0, sideW, sideH });
    for (const c of crops) {
      const r = c.result;
      c.win.style.width = `${sideW * z}px`;
      c.win.style.height = `${sideH * z}px`;
      c.img.style.width = `${r.full.width * r.pixel * z}px`;
      c.img.style.height = `${r.full.height * r.pixel * z}px`;
      c.img.style.transform = `translate(${-x0 * z}px, ${-y0 * z}px)`;
      Object.assign(c.figure.dataset, { x: x0, y: y0, w: sideW, h: sideH });
    }
    where.textContent = `x ${x0}–${x0 + sideW - 1}, y ${y0}–${y0 + sideH - 1} ` +
      `(${sideW}×${sideH} pixels of ${W}×${H})`;
    Object.assign(zoomBox.style, {
      left: `${x0 * viewScale}px`, top: `${y0 * viewScale}px`,
      width: `${sideW * viewScale}px`, height: `${sideH * viewScale}px`,
    });
    showKernels();
  }

  // ---------------------------------------------------------------------------------------
  // UDVD's per-pixel kernels (dynsr/report/kernels.py)

  const kernelSets = results.map((r) => (r.kernels && window.dynsrKernels &&
    window.dynsrKernels[r.key]) ? decodeKernels(window.dynsrKernels[r.key]) : null);
  const kernelRows = [];
  const kernelWhere = el("p", { class: "where", id: "kernel-where" });
  if (kernelSets.some(Boolean)) {
    const section = el("section", { class: "kernels", "aria-label": "dynamic kernels" }, [
      el("h2", { text: "Dynamic kernels" }),
      el("p", { class: "hint", text: "The per-pixel kernel each UDVD block applied at the " +
        "sampled point nearest to the zoom point (the dot in the crops). Red: positive " +
        "taps, blue: negative; each kernel scaled to its own largest |tap|. Taps in " +
        "correlation order (flip to compare with the paper's Fig. 4)." }),
      kernelWhere,
    ]);
    results.forEach((r, i) => {
      if (!kernelSets[i]) return;
      const cells = kernelSets[i].blocks.map((b) => {
        const canvas = el("canvas", { width: String(b.size), height: String(b.size),
          class: "kernel", "data-block": b.kind });
        const caption = el("figcaption");
        return { canvas, caption, figure: el("figure", {}, [canvas, caption]) };
      });
      kernelRows.push({ index: i, cells });
      section.append(el("div", { class: "kernel-row", "data-key": r.key }, [
        el("h3", { text: r.label }), ...cells.map((c) => c.figure)]));
    });
    main.append(section);
  }

  function decodeKernels(raw) {
    const bytes = (b64) => Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));
    const scaleBytes = bytes(raw.scales);
    const view32 = new DataView(scaleBytes.buffer);
    const scales = new Float32Array(scaleBytes.length / 4);
    for (let i = 0; i < scales.length; i++) scales[i] = view32.getFloat32(4 * i, true);
    return { rows: raw.rows, cols: raw.cols, blocks: raw.blocks, scales,
      taps: new Int8Array(bytes(raw.taps).buffer) };
  }

  function nearest(list, value) {
    let best = 0;
    list.forEach((v, i) => { if (Math.abs(v - value) < Math.abs(list[best] - value)) best = i; });
    return best;
  }

  function showKernels() {
    for (const c of crops) c.marker.hidden = true;
    if (!kernelRows.length) return;
    const set0 = kernelSets[kernelRows[0].index];
    const gi = nearest(set0.rows, state.cy);
    const gj = nearest(set0.cols, state.cx);
    const gy = set0.rows[gi];
    const gx = set0.cols[gj];
    kernelWhere.textContent = `zoom point (${state.cx}, ${state.cy}); kernels at the sampled ` +
      `point (${gx}, ${gy})`;
    kernelWhere.dataset.x = gx;
    kernelWhere.dataset.y = gy;
    for (const c of crops) {
      const inside = gx >= state.x0 && gx < state.x0 + state.sideW &&
        gy >= state.y0 && gy < state.y0 + state.sideH;
      c.marker.hidden = !inside;
      c.marker.style.left = `${(gx - state.x0 + 0.5) * state.zoom}px`;
      c.marker.style.top = `${(gy - state.y0 + 0.5) * state.zoom}px`;
    }
    for (const row of kernelRows) {
      const set = kernelSets[row.index];
      const points = set.rows.length * set.cols.length;
      const point = nearest(set.rows, gy) * set.cols.length + nearest(set.cols, gx);
      let tapAt = 0;
      set.blocks.forEach((b, m) => {
        const taps = b.size * b.size;
        const scale = set.scales[m * points + point];
        const start = tapAt + point * taps;
        const values = Array.from(set.taps.subarray(start, start + taps), (t) => t * scale / 127);
        tapAt += points * taps;
        drawKernel(row.cells[m].canvas, values, b.size);
        const sum = values.reduce((a, v) => a + v, 0);
        const grid = b.kind === "U" ? `U ×${b.rate}, this sub-pixel's kernel` : "D";
        row.cells[m].caption.textContent = `block ${m + 1}: ${grid} · ${b.size}×${b.size} · ` +
          `sum ${sum.toFixed(3)} · max |tap| ${scale.toFixed(3)}`;
      });
    }
  }

  function drawKernel(canvas, values, size) {
    const ctx = canvas.getContext("2d");
    const image = ctx.createImageData(size, size);
    const peak = Math.max(1e-12, ...values.map(Math.abs));
    values.forEach((v, i) => {
      const t = v / peak;
      const fade = Math.round(255 * (1 - Math.abs(t)));
      const rgb = t >= 0 ? [255, fade, fade] : [fade, fade, 255];
      image.data.set([...rgb, 255], 4 * i);
    });
    ctx.putImageData(image, 0, 0);
  }

  // ---------------------------------------------------------------------------------------
  // scores and times

  const anyScore = results.some((r) => r.psnr_y !== null && r.psnr_y !== undefined);
  const base = results[baseline];
  const best = anyScore ? Math.max(...models.map(([r]) => r.psnr_y ?? -Infinity)) : null;
  const head = ["", "result", ...(anyScore ? ["PSNR-Y (dB)", "vs bicubic", "SSIM-Y"] : []),
    "time (s)", "size", "file"];
  const rows = results.map((r, i) => el("tr", { "data-index": String(i),
    class: r.psnr_y !== null && r.psnr_y === best ? "best" : null,
    title: "click: show on the right · Shift+click: on the left",
    onclick: (event) => { if (event.shiftKey) state.left = i; else state.right = i; showPair(); },
  }, [
    el("td", { class: "key", text: i < 9 ? String(i + 1) : "" }),
    el("th", { scope: "row" }, [r.label, r.note && r.kind === "model"
      ? el("small", { text: ` ${r.note}` }) : null]),
    ...(anyScore ? [
      el("td", { class: "num", text: fmt(r.psnr_y, 2) }),
      el("td", { class: "num", text: r.kind === "model" && r.psnr_y !== null &&
        base.psnr_y !== null && r !== base ? `${r.psnr_y - base.psnr_y >= 0 ? "+" : ""}` +
        `${(r.psnr_y - base.psnr_y).toFixed(2)}` : "" }),
      el("td", { class: "num", text: fmt(r.ssim_y, 4) }),
    ] : []),
    el("td", { class: "num", text: fmt(r.seconds, 2) }),
    el("td", { class: "num", text: `${r.full.width}×${r.full.height}` }),
    el("td", {}, [el("a", { href: r.full.path, text: r.full.path.split("/").pop() })]),
  ]));
  main.append(el("section", { class: "scores", "aria-label": "scores and times" }, [
    el("h2", { text: anyScore ? "Scores and times" : "Times" }),
    el("table", { class: "scores" }, [
      el("thead", {}, [el("tr", {}, head.map((h) => el("th", { scope: "col", text: h })))]),
      el("tbody", {}, rows),
    ]),
    el("p", { class: "hint", text: (anyScore ? `${data.settings.metrics}. ` : "No HR image: " +
      "no scores (give --hr DIR, or --from-hr with HR inputs). ") + `Time: ${data.settings.time}.` }),
  ]));

  // ---------------------------------------------------------------------------------------
  // extra figures (per image and per model)

  const figures = [...page.figures.map((f) => [null, f]),
    ...results.flatMap((r) => r.figures.map((f) => [r.label, f]))];
  if (figures.length) {
    main.append(el("section", { class: "figures", "aria-label": "figures" }, [
      el("h2", { text: "Figures" }),
      el("div", { class: "figure-grid" }, figures.map(([label, f]) => el("figure", {}, [
        el("a", { href: f.path }, [el("img", { src: f.path, alt: f.caption })]),
        el("figcaption", { text: label ? `${label}: ${f.caption}` : f.caption }),
      ]))),
    ]));
  }

  // ---------------------------------------------------------------------------------------
  // settings

  const s = data.settings;
  const facts = [
    ["inputs", s.mode],
    ["models", s.models.map((m) => `${m.label} (${m.precision})`).join(", ")],
    ["device", `${s.device}, ${s.threads} threads`],
    ["degradation told to non-blind models", s.degradation && Object.keys(s.degradation).length
      ? `blur ${s.degradation.blur ?? "none"}, noise ${s.degradation.noise ?? 0}` : null],
    ["made", `${s.date} by dynsr ${s.dynsr} (torch ${s.torch})`],
  ].filter(([, v]) => v);
  document.getElementById("settings").append(el("dl", {}, facts.flatMap(([k, v]) =>
    [el("dt", { text: k }), el("dd", { text: v })])));

  showPair();
  showZoom();
  document.body.dataset.ready = "true";
})();
