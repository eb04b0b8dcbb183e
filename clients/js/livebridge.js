// livebridge browser client: lands with issue 14 (clients/js/README.md will document it).
export const VERSION = '0.1.0';
