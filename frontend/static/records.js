// The records table: sorted, filtered and paged by the server; a record expands to its detail.
(function () {
  "use strict";
  var root = document.querySelector("[data-records]");
  if (!root) {
    return;
  }
  var auditId = root.dataset.audit;
  var tables = JSON.parse(root.querySelector("[data-tables]").textContent);
  var state = { check: tables[0].check, orderBy: "score", desc: true, offset: 0, limit: 25, member: "", q: "" };
  var thead = root.querySelector("thead");
  var tbody = root.querySelector("tbody");
  var pageText = root.querySelector("[data-page-text]");
  var prev = root.querySelector("[data-prev]");
  var next = root.querySelector("[data-next]");
  var total = 0;

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) { node.setAttribute(name, attrs[name]); });
    if (text !== undefined && text !== null) {
      node.textContent = text;
    }
    return node;
  }
  function spec() {
    return tables.filter(function (t) { return t.check === state.check; })[0];
  }
  function valueAt(row, key) {
    if (key === "score") {
      return row.score;
    }
    return key.split(".").reduce(function (value, part) {
      return value && typeof value === "object" ? value[part] : undefined;
    }, row.values);
  }
  function format(value, kind) {
    if (value === null || value === undefined) {
      return "—";
    }
    if (typeof value === "boolean") {
      return value ? "yes" : "no";
    }
    if (typeof value !== "number") {
      return String(value);
    }
    if (kind === "percent") {
      return (100 * value).toFixed(1) + "%";
    }
    if (kind === "int") {
      return Number(value).toLocaleString();
    }
    var abs = Math.abs(value);
    return abs !== 0 && abs < 0.001 ? value.toExponential(2) : value.toFixed(3);
  }
  function rankClass(rank) {
    return rank === 1 ? "r1" : rank <= 5 ? "r2" : rank <= 50 ? "r3" : "r4";
  }
  function tokenView(detail) {
    var paragraph = el("p", { "class": "tokens", "aria-label": "suffix tokens coloured by rank" });
    paragraph.appendChild(el("span", { "class": "prefix" }, detail.prefix || ""));
    (detail.tokens || []).forEach(function (piece, i) {
      var rank = detail.ranks[i];
      var p = Math.exp(detail.logprobs[i]);
      paragraph.appendChild(el("span", {
        "class": "tok " + rankClass(rank),
        "title": "rank " + rank + " · p = " + p.toFixed(4),
        "data-rank": String(rank)
      }, piece));
    });
    return paragraph;
  }
  // Approximate memorization: the true suffix once per scheme, the tokens its closest generation
  // reproduces (the LCS alignment's spans, [start, end)) highlighted, then that generation.
  function spansView(detail, scheme) {
    var box = el("div", { "class": "approx-view", "data-scheme": scheme });
    var paragraph = el("p", { "class": "tokens", "aria-label": "suffix tokens the " + scheme + " generation reproduces" });
    paragraph.appendChild(el("span", { "class": "prefix" }, detail.prefix || ""));
    var matched = {};
    (detail.spans[scheme] || []).forEach(function (span) {
      for (var i = span[0]; i < span[1]; i++) { matched[i] = true; }
    });
    (detail.tokens || []).forEach(function (piece, i) {
      paragraph.appendChild(el("span", {
        "class": "tok " + (matched[i] ? "hit" : "miss"),
        "title": matched[i] ? "reproduced" : "not reproduced",
        "data-match": matched[i] ? "1" : "0"
      }, piece));
    });
    box.appendChild(paragraph);
    if (detail.generated && detail.generated[scheme] !== undefined) {
      box.appendChild(el("pre", { "class": "generated", "aria-label": scheme + " generation" }, detail.generated[scheme]));
    }
    return box;
  }
  // A WILT conversation, turn by turn; the model's text is shown as text, never as markup.
  function transcriptView(messages) {
    var list = el("ol", { "class": "transcript", "aria-label": "conversation" });
    messages.forEach(function (message) {
      var item = el("li", { "class": "turn " + message.role });
      item.appendChild(el("span", { "class": "role" }, message.role));
      item.appendChild(el("pre", {}, message.content));
      list.appendChild(item);
    });
    return list;
  }
  // K&K: each form of the puzzle, the model's answer and the gold one side by side.
  function answersView(detail) {
    var table = el("table", { "class": "answers" });
    var head = el("tr");
    ["form", "model answer", "gold answer"].forEach(function (name) { head.appendChild(el("th", {}, name)); });
    table.appendChild(head);
    Object.keys(detail.outputs).forEach(function (form) {
      var row = el("tr", { "data-form": form });
      row.appendChild(el("td", {}, form));
      row.appendChild(el("td", {}, "")).appendChild(el("pre", {}, detail.outputs[form]));
      row.appendChild(el("td", {}, "")).appendChild(el("pre", {}, (detail.gold || {})[form] || "—"));
      table.appendChild(row);
    });
    return table;
  }
  function isPlain(value) {
    return value !== null && typeof value === "object" && !Array.isArray(value);
  }
  // Any value as a cell's content: scalars as text, objects and lists as tables within. Every
  // string goes through textContent (records are hostile input); nothing is left out.
  function valueNode(value) {
    if (isPlain(value)) {
      return kvTable(value);
    }
    if (Array.isArray(value)) {
      return listTable(value);
    }
    if (typeof value === "number" && Number.isInteger(value)) {
      return document.createTextNode(value.toLocaleString());
    }
    return document.createTextNode(typeof value === "string" ? value : format(value));
  }
  // The registry's description of each key a table column shows, as the key's tooltip.
  function descriptions(check) {
    var found = {};
    tables.filter(function (t) { return t.check === check; }).forEach(function (t) {
      t.columns.forEach(function (c) { found[c.key.split(".")[0]] = c.description; });
    });
    return found;
  }
  function kvTable(object, caption, titles) {
    var table = el("table", { "class": "kv" });
    if (caption) {
      table.appendChild(el("caption", {}, caption));
    }
    var body = el("tbody");
    Object.keys(object).forEach(function (name) {
      var tr = el("tr", { "data-key": name });
      tr.appendChild(el("th", { "scope": "row", "title": (titles || {})[name] || "" }, name));
      tr.appendChild(el("td")).appendChild(valueNode(object[name]));
      body.appendChild(tr);
    });
    if (!Object.keys(object).length) {
      body.appendChild(el("tr")).appendChild(el("td", {}, "(empty)"));
    }
    table.appendChild(body);
    return table;
  }
  // A list of objects is a table with a column per key; a list of scalars is one row of cells.
  function listTable(list) {
    var table = el("table", { "class": "kv kv-list" });
    var body = el("tbody");
    if (list.length && list.every(isPlain)) {
      var keys = [];
      list.forEach(function (item) {
        Object.keys(item).forEach(function (k) { if (keys.indexOf(k) < 0) { keys.push(k); } });
      });
      var head = el("tr");
      head.appendChild(el("th", { "scope": "col" }, "#"));
      keys.forEach(function (k) { head.appendChild(el("th", { "scope": "col" }, k)); });
      table.appendChild(el("thead")).appendChild(head);
      list.forEach(function (item, i) {
        var tr = el("tr");
        tr.appendChild(el("th", { "scope": "row" }, String(i)));
        keys.forEach(function (k) {
          tr.appendChild(el("td")).appendChild(k in item ? valueNode(item[k]) : document.createTextNode("—"));
        });
        body.appendChild(tr);
      });
    } else {
      var row = el("tr", { "class": "kv-seq" });
      list.forEach(function (item, i) {
        row.appendChild(el("td", { "title": "[" + i + "]" })).appendChild(valueNode(item));
      });
      if (!list.length) {
        row.appendChild(el("td", {}, "(empty)"));
      }
      body.appendChild(row);
    }
    table.appendChild(body);
    return table;
  }
  // The stored detail can be large (activations, runs): drawn as a table when first opened.
  function detailTable(check) {
    var box = el("details", { "data-detail": check.check });
    box.appendChild(el("summary", {}, check.check + " · stored detail"));
    box.addEventListener("toggle", function () {
      if (box.open && !box.querySelector("table")) {
        box.appendChild(kvTable(check.detail));
      }
    });
    return box;
  }
  function detailContent(record) {
    var box = el("div", { "class": "record-detail" });
    box.appendChild(kvTable({ "record": record.sample_index, "sample id": record.sample_id }));
    record.checks.forEach(function (check) {
      if (check.detail && check.detail.tokens && check.detail.spans) {
        Object.keys(check.detail.spans).forEach(function (scheme) {
          box.appendChild(el("h4", {}, "Suffix at token " + check.detail.offset + " as " + scheme + " decoding reproduces it"));
          box.appendChild(spansView(check.detail, scheme));
        });
      } else if (check.detail && check.detail.tokens) {
        box.appendChild(el("h4", {}, "Suffix at token " + check.detail.offset + ", token by token"));
        box.appendChild(tokenView(check.detail));
      }
      if (check.detail && check.detail.transcript) {
        box.appendChild(el("h4", {}, "Conversation"));
        box.appendChild(transcriptView(check.detail.transcript));
      }
      if (check.detail && check.detail.outputs) {
        box.appendChild(el("h4", {}, "Original and perturbed answers"));
        box.appendChild(answersView(check.detail));
      }
    });
    record.checks.forEach(function (check) {
      var values = kvTable(check.values, check.check + " values", descriptions(check.check));
      values.setAttribute("data-values", check.check);
      box.appendChild(values);
      if (isPlain(check.detail) && Object.keys(check.detail).length) {
        box.appendChild(detailTable(check));
      }
    });
    return box;
  }
  function toggle(button, row, columns) {
    var open = button.getAttribute("aria-expanded") === "true";
    var existing = document.getElementById(button.getAttribute("aria-controls"));
    if (open) {
      button.setAttribute("aria-expanded", "false");
      if (existing) {
        existing.remove();
      }
      return;
    }
    button.setAttribute("aria-expanded", "true");
    var detailRow = el("tr", { "class": "detail", "id": button.getAttribute("aria-controls") });
    var cell = el("td", { "colspan": String(columns + 4) }, "Loading…");
    detailRow.appendChild(cell);
    button.closest("tr").after(detailRow);
    fetch("/v1/audits/" + encodeURIComponent(auditId) + "/samples/" + row.sample_index, { credentials: "same-origin" })
      .then(function (response) { return response.json(); })
      .then(function (record) {
        cell.textContent = "";
        cell.appendChild(detailContent(record));
      })
      .catch(function () { cell.textContent = "Could not load this record."; });
  }
  function renderHeader() {
    var table = spec();
    root.querySelector("[data-rank-description]").textContent =
      "Ordered by score: " + table.rank_description + ". Click a column to sort by it.";
    thead.textContent = "";
    var tr = el("tr");
    tr.appendChild(el("th", { "scope": "col" }, ""));
    var columns = [{ key: "sample_index", label: "#", description: "position in the dataset" }];
    columns.push({ key: "__id", label: "sample", unsortable: true });
    columns.push({ key: "__member", label: "member", unsortable: true });
    table.columns.forEach(function (c) { columns.push(c); });
    columns.forEach(function (column) {
      var th = el("th", { "scope": "col", "title": column.description || "" });
      if (column.unsortable) {
        th.textContent = column.label;
      } else {
        var sorted = state.orderBy === column.key;
        th.setAttribute("aria-sort", sorted ? (state.desc ? "descending" : "ascending") : "none");
        var button = el("button", { "type": "button", "class": "sort", "data-sort": column.key }, column.label);
        button.appendChild(el("span", { "class": "arrow", "aria-hidden": "true" }, sorted ? (state.desc ? " ▼" : " ▲") : ""));
        button.addEventListener("click", function () {
          state.desc = state.orderBy === column.key ? !state.desc : column.key !== "sample_index";
          state.orderBy = column.key;
          state.offset = 0;
          load();
        });
        th.appendChild(button);
      }
      tr.appendChild(th);
    });
    thead.appendChild(tr);
  }
  function renderRows(page) {
    var table = spec();
    total = page.count;
    tbody.textContent = "";
    if (!page.data.length) {
      var empty = el("tr");
      empty.appendChild(el("td", { "colspan": String(table.columns.length + 4) }, "No records match."));
      tbody.appendChild(empty);
    }
    page.data.forEach(function (row) {
      var tr = el("tr", { "data-sample": String(row.sample_index) });
      var cell = el("td");
      var button = el("button", {
        "type": "button", "class": "expand", "aria-expanded": "false",
        "aria-controls": "detail-" + state.check + "-" + row.sample_index,
        "aria-label": "Show record " + row.sample_index
      }, "▸");
      button.addEventListener("click", function () { toggle(button, row, table.columns.length); });
      cell.appendChild(button);
      tr.appendChild(cell);
      tr.appendChild(el("td", {}, String(row.sample_index)));
      tr.appendChild(el("td", { "class": "clip", "title": row.sample_id }, row.sample_id));
      var member = row.values.member;
      tr.appendChild(el("td", {}, member === true ? "member" : member === false ? "non-member" : "—"));
      table.columns.forEach(function (column) {
        var value = valueAt(row, column.key);
        var td = el("td", { "data-key": column.key }, format(value, column.format));
        if (column.format === "bool" && value === true) {
          td.className = "flag";
        }
        tr.appendChild(td);
      });
      tbody.appendChild(tr);
    });
    var first = total ? state.offset + 1 : 0;
    pageText.textContent = first.toLocaleString() + "–" + Math.min(state.offset + state.limit, total).toLocaleString() + " of " + total.toLocaleString();
    prev.disabled = state.offset === 0;
    next.disabled = state.offset + state.limit >= total;
  }
  function load() {
    renderHeader();
    var query = new URLSearchParams({
      check: state.check, order_by: state.orderBy, desc: String(state.desc),
      limit: String(state.limit), offset: String(state.offset)
    });
    if (state.member) {
      query.set("member", state.member);
    }
    if (state.q) {
      query.set("q", state.q);
    }
    root.setAttribute("aria-busy", "true");
    fetch("/v1/audits/" + encodeURIComponent(auditId) + "/samples?" + query.toString(), { credentials: "same-origin" })
      .then(function (response) {
        return response.json().then(function (body) {
          if (!response.ok) {
            throw new Error(body.error ? body.error.message : response.statusText);
          }
          return body;
        });
      })
      .then(renderRows)
      .catch(function (error) {
        tbody.textContent = "";
        var tr = el("tr");
        tr.appendChild(el("td", { "colspan": "99", "class": "error", "role": "alert" }, error.message));
        tbody.appendChild(tr);
      })
      .finally(function () { root.setAttribute("aria-busy", "false"); });
  }
  root.querySelectorAll("[role=tab]").forEach(function (tab) {
    tab.addEventListener("click", function () {
      root.querySelectorAll("[role=tab]").forEach(function (other) { other.setAttribute("aria-selected", "false"); });
      tab.setAttribute("aria-selected", "true");
      state.check = tab.dataset.check;
      state.orderBy = "score";
      state.desc = true;
      state.offset = 0;
      load();
    });
  });
  var filters = root.querySelector("[data-records-filters]");
  var timer = null;
  filters.addEventListener("submit", function (event) { event.preventDefault(); });
  if (filters.member) {  // a dataset audit has no member filter
    filters.member.addEventListener("change", function () {
      state.member = filters.member.value;
      state.offset = 0;
      load();
    });
  }
  filters.q.addEventListener("input", function () {
    window.clearTimeout(timer);
    timer = window.setTimeout(function () {
      state.q = filters.q.value.trim();
      state.offset = 0;
      load();
    }, 300);
  });
  prev.addEventListener("click", function () {
    state.offset = Math.max(0, state.offset - state.limit);
    load();
  });
  next.addEventListener("click", function () {
    if (state.offset + state.limit < total) {
      state.offset += state.limit;
      load();
    }
  });
  load();
})();
