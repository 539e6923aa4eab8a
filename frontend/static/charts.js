// Draws every chart of the page from the Plotly JSON the server embedded next to it.
(function () {
  "use strict";
  function render() {
    if (!window.Plotly) {
      return;
    }
    document.querySelectorAll(".chart[data-figure]").forEach(function (element) {
      var source = document.getElementById(element.dataset.figure);
      if (!source || element.dataset.rendered) {
        return;
      }
      var figure = JSON.parse(source.textContent);
      var config = { responsive: true, displaylogo: false, modeBarButtonsToRemove: ["select2d", "lasso2d"] };
      window.Plotly.newPlot(element, figure.data, figure.layout, config).then(function () {
        element.dataset.rendered = String(figure.data.length);
      });
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", render);
  } else {
    render();
  }
})();
