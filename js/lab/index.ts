import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';

import { mistudioIcon } from './icon';
import { RestModel } from './model';
import { insertIntoNotebook } from './notebook';
import { hooksCell } from './snippet';
import { MiStudioSidebar } from './sidebar';

namespace CommandIDs {
  export const open = 'mistudio:open';
  export const insertHooks = 'mistudio:insert-hooks';
}

const SIDEBAR_ID = 'mistudio-sidebar';
const CATEGORY = 'miStudio';

function activate(
  app: JupyterFrontEnd,
  tracker: INotebookTracker,
  restorer: ILayoutRestorer | null,
  palette: ICommandPalette | null,
): void {
  const { commands, shell, serviceManager } = app;
  const model = new RestModel(serviceManager.serverSettings);
  const selected = () => (model.get('selected') as string[] | undefined) ?? [];
  // A new notebook on the default kernel, without the kernel dialog.
  const newNotebook = async (): Promise<NotebookPanel> => {
    await serviceManager.kernelspecs.ready;
    const kernelName = serviceManager.kernelspecs.specs?.default;
    return commands.execute('notebook:create-new', { kernelName });
  };

  const sidebar = new MiStudioSidebar({
    model,
    onInsert: () => void commands.execute(CommandIDs.insertHooks),
  });
  sidebar.id = SIDEBAR_ID;
  sidebar.title.icon = mistudioIcon;
  sidebar.title.caption = 'miStudio: models, downloads and hook points';
  shell.add(sidebar, 'left', { rank: 850 });
  restorer?.add(sidebar, SIDEBAR_ID);

  commands.addCommand(CommandIDs.open, {
    label: 'Show miStudio Models',
    icon: mistudioIcon,
    execute: () => shell.activateById(SIDEBAR_ID),
  });
  commands.addCommand(CommandIDs.insertHooks, {
    label: 'Insert Selected Hooks into Notebook',
    isEnabled: () => selected().length > 0 && model.architectureRecord !== null,
    execute: async () => {
      const record = model.architectureRecord!;
      const panel = await insertIntoNotebook(tracker, newNotebook, hooksCell(record.id, record.name, selected()));
      shell.activateById(panel.id);
    },
  });
  model.on('change:selected', () => commands.notifyCommandChanged(CommandIDs.insertHooks));

  palette?.addItem({ command: CommandIDs.open, category: CATEGORY });
  palette?.addItem({ command: CommandIDs.insertHooks, category: CATEGORY });
}

/** The miStudio sidebar: models and downloads of the server extension, rendered by the shared views. */
const plugin: JupyterFrontEndPlugin<void> = {
  id: 'mistudio-jupyter:sidebar',
  description: 'A left-sidebar panel for Hugging Face models: preview, download, architecture, hooks.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ILayoutRestorer, ICommandPalette],
  activate,
};

export default plugin;
