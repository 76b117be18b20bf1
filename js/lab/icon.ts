import { LabIcon } from '@jupyterlab/ui-components';

// Three layers of units, one hooked with a probe: the sidebar's tab icon (themed through jp-icon3).
const svgstr = `<svg xmlns="http://www.w3.org/2000/svg" width="16" viewBox="0 0 24 24">
  <g class="jp-icon3" stroke="#616161" stroke-width="1.5" fill="none">
    <path d="M5 5l7 7M5 12h7M5 19l7-7M12 12l7-7M12 12l7 7"/>
  </g>
  <g class="jp-icon3" fill="#616161">
    <circle cx="5" cy="5" r="2.5"/><circle cx="5" cy="12" r="2.5"/><circle cx="5" cy="19" r="2.5"/>
    <circle cx="19" cy="5" r="2.5"/><circle cx="19" cy="19" r="2.5"/>
  </g>
  <g class="jp-icon-brand0" fill="#1976d2"><circle cx="12" cy="12" r="3.5"/></g>
</svg>`;

export const mistudioIcon = new LabIcon({ name: 'mistudio-jupyter:logo', svgstr });
